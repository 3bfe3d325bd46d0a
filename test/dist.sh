#!/usr/bin/env bash
# Builds docker-worker's release tarballs into OUTDIR (default dist/):
#
#   docker-worker-<version>-linux-amd64.tar.gz
#   docker-worker-<version>-linux-arm64.tar.gz
#   SHA256SUMS
#
# Each tarball holds one directory, docker-worker-<version>-linux-<arch>/,
# with the static binary (CGO_ENABLED=0) stamped with the version and commit
# (`docker-worker version` prints them), schemas/*.json, deploy/ when the
# checkout has one (its files tracked by git), and README.md.
#
# The version is $VERSION when set; else the tag vX.Y.Z naming HEAD, as
# X.Y.Z; else <baseVersion>-dev.<short commit> (baseVersion as in
# cmd/docker-worker/version.go). Uncommitted changes to tracked files add
# ".dirty" to a computed version and "-dirty" to the stamped commit.
#
# The same commit, Go toolchain and version give byte-identical tarballs:
# paths are trimmed from the binaries, and tar entries are sorted, owned by
# 0:0, with normalised modes and the commit's time (SOURCE_DATE_EPOCH, when
# set, wins), and gzip records no name or time.
#
# usage: test/dist.sh [--print-version] [OUTDIR]
#   --print-version  print the version and commit that would be stamped, and exit
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
go=${GO:-go}
# DIST_ARCHES narrows the build (the test command builds amd64 only, to
# spare a cold cross build of the whole module).
read -r -a arches <<<"${DIST_ARCHES:-amd64 arm64}"

die() {
	printf 'dist: %s\n' "$*" >&2
	exit 1
}

print_only=false
if [[ ${1:-} == --print-version ]]; then
	print_only=true
	shift
fi
(($# <= 1)) || die "usage: test/dist.sh [--print-version] [OUTDIR]"
out=${1:-$root/dist}

cd "$root"
in_git=false
if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
	in_git=true
fi

commit=unknown
dirty=false
if $in_git; then
	commit=$(git rev-parse HEAD)
	git update-index -q --refresh >/dev/null 2>&1 || true
	if ! git diff-index --quiet HEAD --; then
		dirty=true
	fi
fi

version=${VERSION:-}
if [[ -z $version ]]; then
	tag=
	if $in_git; then
		tag=$(git describe --tags --exact-match --match 'v[0-9]*' HEAD 2>/dev/null || true)
	fi
	if [[ -n $tag ]]; then
		version=${tag#v}
	else
		base=$(sed -n 's/^const baseVersion = "\([^"]*\)"$/\1/p' cmd/docker-worker/version.go)
		[[ -n $base ]] || die "no baseVersion in cmd/docker-worker/version.go"
		version=$base-dev.${commit:0:12}
	fi
	if $dirty; then
		version=$version.dirty
	fi
fi
[[ $version =~ ^[0-9A-Za-z][0-9A-Za-z.+_-]*$ ]] || die "version $version: use letters, digits and . + _ - only"
if $dirty; then
	commit=$commit-dirty
fi

if $print_only; then
	printf 'version %s\ncommit %s\n' "$version" "$commit"
	exit 0
fi

# Entry times: the commit's, so that a rebuild of the same commit matches.
if [[ -z ${SOURCE_DATE_EPOCH:-} ]]; then
	SOURCE_DATE_EPOCH=0
	if $in_git; then
		SOURCE_DATE_EPOCH=$(git log -1 --format=%ct HEAD)
	fi
fi

# files_of DIR: the files of DIR to ship, one a line: those git tracks (and
# that exist) in a checkout, else every file.
files_of() {
	if $in_git; then
		git ls-files -- "$1" | while IFS= read -r f; do
			if [[ -f $f ]]; then printf '%s\n' "$f"; fi
		done
	else
		find "$1" -type f
	fi
}

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$out"

names=()
for arch in "${arches[@]}"; do
	name=docker-worker-$version-linux-$arch
	stage=$work/$name
	mkdir -p "$stage/schemas"
	CGO_ENABLED=0 GOOS=linux GOARCH=$arch "$go" build -trimpath -buildvcs=false \
		-ldflags "-X main.release=$version -X main.commit=$commit" \
		-o "$stage/docker-worker" ./cmd/docker-worker
	cp schemas/*.json "$stage/schemas/"
	cp README.md "$stage/"
	if [[ -d deploy ]]; then
		while IFS= read -r f; do
			mkdir -p "$stage/$(dirname "$f")"
			cp "$f" "$stage/$f"
		done < <(files_of deploy)
	fi
	tar --sort=name --format=gnu --mtime="@$SOURCE_DATE_EPOCH" \
		--owner=0 --group=0 --numeric-owner --mode='u=rwX,go=rX' \
		-C "$work" -cf - "$name" | gzip -n >"$work/$name.tar.gz"
	mv "$work/$name.tar.gz" "$out/$name.tar.gz"
	names+=("$name.tar.gz")
done

(cd "$out" && sha256sum "${names[@]}" >SHA256SUMS)
printf 'dist: %s\n' "${names[@]/#/$out/}" "$out/SHA256SUMS"
