# shellcheck shell=bash
# The variables of the app image (the worker's config and unit), their
# defaults and their checks, shared by steps/app.sh and bin/build.

# app_defaults: fills the optional variables.
app_defaults() {
	: "${DW_PROVISIONER_ID:=proj-docker-worker}"
	: "${DW_WORKER_GROUP:=docker-worker}"
	: "${DW_CAPACITY:=1}"
	: "${DW_ALLOW_PRIVILEGED:=false}"
	: "${DW_ON_EXIT:=poweroff}"
	: "${DW_IDLE_SHUTDOWN:=false}"
	: "${DW_SPOT_TERMINATION:=true}"
	export DW_PROVISIONER_ID DW_WORKER_GROUP DW_CAPACITY DW_ALLOW_PRIVILEGED \
		DW_ON_EXIT DW_IDLE_SHUTDOWN DW_SPOT_TERMINATION
}

# check_app_vars: prints one line per missing or invalid variable and
# fails when there is any.
check_app_vars() {
	local bad=0 id='^[A-Za-z0-9_-]{1,38}$'
	need() {
		if [[ -z ${!1:-} ]]; then
			printf '  %s: required (%s)\n' "$1" "$2" >&2
			bad=1
		fi
	}
	match() {
		if [[ -n ${!1:-} && ! ${!1} =~ $2 ]]; then
			printf '  %s: %q is not %s\n' "$1" "${!1}" "$3" >&2
			bad=1
		fi
	}
	need DW_ROOT_URL "the Taskcluster root URL, e.g. https://tc.example.com"
	need DW_WORKER_TYPE "the worker type (worker pool name after the provisioner id)"
	match DW_ROOT_URL '^https?://[A-Za-z0-9.:_/-]+$' "an http(s) URL"
	match DW_WORKER_TYPE "$id" "1-38 of A-Z a-z 0-9 - _"
	match DW_PROVISIONER_ID "$id" "1-38 of A-Z a-z 0-9 - _"
	match DW_WORKER_GROUP "$id" "1-38 of A-Z a-z 0-9 - _"
	match DW_CAPACITY '^[1-9][0-9]*$' "a positive integer"
	match DW_ALLOW_PRIVILEGED '^(true|false)$' "true or false"
	match DW_IDLE_SHUTDOWN '^(true|false)$' "true or false"
	match DW_SPOT_TERMINATION '^(true|false)$' "true or false"
	match DW_ON_EXIT '^(poweroff|none)$' "poweroff or none"
	if [[ -n ${DW_COT_TRUSTED_KEY:-} && ! -r $DW_COT_TRUSTED_KEY ]]; then
		printf '  DW_COT_TRUSTED_KEY: %s is not a readable file\n' "$DW_COT_TRUSTED_KEY" >&2
		bad=1
	fi
	unset -f need match
	return "$bad"
}
