"""Running and rendering a report: the runner (papermill) and the two renderers."""
