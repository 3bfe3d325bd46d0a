# shellcheck shell=bash
# Helpers shared by the provisioning steps, bin/build and the boot-time
# scripts' tests: logging, idempotent file installation, template
# rendering, package installation and the kernel-command switch.
#
# Kernel commands (module loading, sysctl, LVM and filesystems on real
# disks, kernel packages) go through `kernel`: with DW_KERNEL_DRY_RUN=1 they
# are only recorded (to stdout, and appended to DW_COMMAND_LOG when set),
# so the rest of the provisioning can run inside a container.

say() { printf '%s: %s\n' "${DW_LOG_PREFIX:-provision}" "$*"; }
die() {
	printf '%s: error: %s\n' "${DW_LOG_PREFIX:-provision}" "$*" >&2
	exit 1
}

# kernel CMD...: runs CMD, or records it under DW_KERNEL_DRY_RUN=1.
kernel() {
	if [[ ${DW_KERNEL_DRY_RUN:-0} == 1 ]]; then
		say "would run: $*"
		if [[ -n ${DW_COMMAND_LOG:-} ]]; then
			printf '%s\n' "$*" >>"$DW_COMMAND_LOG"
		fi
		return 0
	fi
	"$@"
}

# kernel_query CMD...: a read-only kernel query; false under dry run.
kernel_query() {
	if [[ ${DW_KERNEL_DRY_RUN:-0} == 1 ]]; then
		kernel "$@"
		return 1
	fi
	"$@"
}

# put_content CONTENT DEST MODE: writes CONTENT (plus a newline) to DEST
# when it differs, reporting `changed DEST`.
put_content() {
	local content=$1 dest=$2 mode=$3 tmp
	tmp=$(mktemp)
	printf '%s\n' "$content" >"$tmp"
	put_file "$tmp" "$dest" "$mode"
	rm -f "$tmp"
}

# put_file SRC DEST MODE: copies SRC to DEST when the content or mode
# differs, reporting `changed DEST`.
put_file() {
	local src=$1 dest=$2 mode=$3
	if [[ -f $dest ]] && cmp -s "$src" "$dest" && [[ $(stat -c %a "$dest") == "${mode#0}" ]]; then
		return 0
	fi
	install -D -m "$mode" "$src" "$dest"
	say "changed $dest"
}

# render TEMPLATE: prints TEMPLATE with every @@NAME@@ replaced by the value
# of the variable NAME; an unset variable is an error.
render() {
	local src=$1 content name
	content=$(<"$src")
	while [[ $content =~ @@([A-Z_][A-Z0-9_]*)@@ ]]; do
		name=${BASH_REMATCH[1]}
		[[ -v $name ]] || die "$src: @@${name}@@: the variable $name is not set"
		content=${content//"@@${name}@@"/"${!name}"}
	done
	printf '%s\n' "$content"
}

# apt_install PACKAGE...: installs the packages that are not installed.
apt_install() {
	local missing=() p
	for p in "$@"; do
		if ! dpkg-query -W -f '${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
			missing+=("$p")
		fi
	done
	((${#missing[@]} == 0)) && return 0
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
	say "installed ${missing[*]}"
}

# enable_units UNIT...: enables units; works offline (image builds,
# containers) as well as on a booted system.
enable_units() {
	local u
	if [[ -d /run/systemd/system ]]; then
		systemctl daemon-reload
	fi
	for u in "$@"; do
		if ! systemctl is-enabled -q "$u" 2>/dev/null; then
			systemctl enable -q "$u"
			say "enabled $u"
		fi
	done
}
