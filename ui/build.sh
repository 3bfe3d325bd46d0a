#!/usr/bin/env bash
# Installs the browser code the web page embeds (ui/package-lock.json:
# the xterm terminal emulator) and copies it into
# worker/localqueue/webui/assets/vendor, where go:embed picks it up at the
# next Go build. Without npm it says so and leaves the page without a
# terminal (the shell page then offers line mode); the Go build never
# needs it. Quick when the copies are newer than the lock file.
set -euo pipefail
ui=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
vendor="$ui/../worker/localqueue/webui/assets/vendor"
pkg="$ui/node_modules/@xterm/xterm"
if [[ -f "$vendor/xterm.js" && -f "$vendor/xterm.css" && "$vendor/xterm.js" -nt "$ui/package-lock.json" ]]; then
	echo "ui:        xterm already embedded"
	exit 0
fi
if ! command -v npm >/dev/null; then
	echo "ui:        npm not found: the web page's terminal is not built (the shell page offers line mode)"
	exit 0
fi
if ! (cd "$ui" && npm ci --no-audit --no-fund --loglevel=error >/dev/null); then
	echo "ui:        npm ci failed: the web page's terminal is not built (the shell page offers line mode)"
	exit 0
fi
cp "$pkg/lib/xterm.js" "$pkg/css/xterm.css" "$vendor/"
echo "ui:        embedded xterm $(node -p "require('$pkg/package.json').version" 2>/dev/null || echo '?')"
