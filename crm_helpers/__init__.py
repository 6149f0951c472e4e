"""Helpers shared by the CRM insight report's chapter notebooks: config, data, features, models, report."""

__version__ = "0.1.0"
