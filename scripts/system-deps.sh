#!/usr/bin/env bash
# System packages the report needs beyond Python wheels: Noto fonts (Latin and CJK) for Typst and
# matplotlib; Chromium for the browser check of the HTML report; poppler-utils for the PDF page test;
# a Java 17 runtime for the Spark engine (run.engine: spark; PySpark 4 needs Java 17 or later).
# Installed only when missing, and only where apt-get can run as root.
set -euo pipefail
fonts="$(fc-list : family 2>/dev/null || true)"
need=()
command -v fc-list >/dev/null 2>&1 || need+=(fontconfig)
grep -qi "Noto Sans CJK" <<<"$fonts" || need+=(fonts-noto-cjk)
grep -qx "Noto Sans" <<<"$fonts" || need+=(fonts-noto-core)
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v pdftoppm >/dev/null 2>&1 || need+=(poppler-utils)
command -v java >/dev/null 2>&1 || need+=(openjdk-17-jre-headless)
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "installing system packages: ${need[*]}"
  (apt-get install -y -q --no-install-recommends "${need[@]}" >/dev/null 2>&1) || \
    (apt-get update -q >/dev/null && apt-get install -y -q --no-install-recommends "${need[@]}" >/dev/null)
else
  echo "note: missing system packages ${need[*]} (install them with apt-get as root: CJK text in PDFs needs the fonts, run.engine: spark needs Java 17)" >&2
fi
