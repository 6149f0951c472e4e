#!/usr/bin/env bash
# System packages the report needs beyond Python wheels: fonts for Typst and matplotlib
# (Noto, including CJK). Installed only when missing, and only where apt-get can run as root.
set -euo pipefail
need=()
fc-list 2>/dev/null | grep -qi "Noto Sans CJK" || need+=(fonts-noto-cjk)
fc-list 2>/dev/null | grep -qi "Noto Sans:" || fc-list 2>/dev/null | grep -qi "NotoSans-Regular" || need+=(fonts-noto-core)
command -v fc-list >/dev/null 2>&1 || need+=(fontconfig)
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "installing system packages: ${need[*]}"
  (apt-get install -y -q --no-install-recommends "${need[@]}" >/dev/null 2>&1) || \
    (apt-get update -q >/dev/null && apt-get install -y -q --no-install-recommends "${need[@]}" >/dev/null)
else
  echo "note: missing system packages ${need[*]} (install them with apt-get as root for CJK text in PDFs)" >&2
fi
