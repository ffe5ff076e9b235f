#!/usr/bin/env bash
# Installs kmsfs like a system tool, and removes exactly that again.
#
#   scripts/install.sh [--prefix DIR] [--sbindir DIR] [--binary FILE] [--manual-tool FILE]   install
#   scripts/install.sh --uninstall [--prefix DIR]                        remove what was installed
#
# --prefix   where bin/, share/ and lib/systemd go (default /usr/local)
# --sbindir  where the mount(8) helpers go (default /sbin: mount(8) looks there
#            and nowhere else, whatever the prefix)
# --binary   install this kmsfs instead of building a release one
# --manual-tool  swift-argument-parser's generate-manual tool, already built
#            (`scripts/install.sh --print-manual-tool` builds it and prints its path)
#
# Installs: PREFIX/bin/kmsfs; SBINDIR/mount.kmsfs and SBINDIR/mount.fuse.kmsfs
# (links to it, for `mount -t kmsfs` and `mount -t fuse.kmsfs`); man pages
# generated from the commands' help (swift-argument-parser's generate-manual)
# in PREFIX/share/man/man1; bash, zsh and fish completions; the systemd unit
# template PREFIX/lib/systemd/system/kmsfs@.service. Every path is listed in
# PREFIX/share/kmsfs/installed, which --uninstall reads: nothing else is removed.
set -euo pipefail
prefix=/usr/local sbindir=/sbin binary= uninstall=0 tool= print_tool=0
usage() { echo "install.sh: $1" >&2; exit 64; }
# Paths given relative to where the script was called from, made absolute before the cd below.
absolute() { case "$1" in /*) printf '%s' "$1" ;; *) printf '%s/%s' "$PWD" "$1" ;; esac; }
while [ $# -gt 0 ]; do
  case "$1" in
    --prefix|--sbindir|--binary|--manual-tool) [ $# -ge 2 ] || usage "$1 needs a value"
      case "$1" in
        --prefix) prefix=$(absolute "$2") ;; --sbindir) sbindir=$(absolute "$2") ;;
        --binary) binary=$(absolute "$2") ;; --manual-tool) tool=$(absolute "$2") ;;
      esac
      shift 2 ;;
    --print-manual-tool) print_tool=1; shift ;;
    --uninstall) uninstall=1; shift ;;
    *) usage "unknown argument $1" ;;
  esac
done
# These paths go into a systemd unit and a sed expression: plain characters only.
for dir in "$prefix" "$sbindir"; do
  [[ "$dir" =~ ^/[A-Za-z0-9/._-]*$ ]] || usage "'$dir' may contain only letters, digits, '/', '.', '_' and '-'"
done
cd "$(dirname "$0")/.."
manifest=$prefix/share/kmsfs/installed

# swift-argument-parser's generate-manual tool: its plugin builds it (in .build,
# so not while another SwiftPM command holds .build: pass --manual-tool then).
manual_tool() {
  swift package plugin generate-manual --help >/dev/null
  find "$PWD/.build" -path '*/generate-manual-tool' -type f -perm -u+x | head -1
}
if [ "$print_tool" = 1 ]; then manual_tool; exit 0; fi

if [ "$uninstall" = 1 ]; then
  [ -f "$manifest" ] || { echo "install.sh: nothing installed under $prefix ($manifest is missing)" >&2; exit 66; }
  mapfile -t paths < "$manifest"
  rm -f "$manifest"
  removed=0
  # Newest first: files and links before the directories made for them. Only what is
  # ours: paths under the prefix, and links elsewhere that point at our binary.
  for (( i = ${#paths[@]} - 1; i >= 0; i-- )); do
    path=${paths[$i]}
    case "$path" in
      "$prefix"/*) ;;
      *) [ -L "$path" ] && [ "$(readlink "$path")" = "$prefix/bin/kmsfs" ] || { echo "install.sh: leaving $path (not ours)" >&2; continue; } ;;
    esac
    if [ -d "$path" ] && [ ! -L "$path" ]; then rmdir "$path" 2>/dev/null && removed=$((removed + 1)) || true
    elif [ -e "$path" ] || [ -L "$path" ]; then rm -f "$path" && removed=$((removed + 1)); fi
  done
  echo "uninstalled kmsfs from $prefix ($removed of ${#paths[@]} installed paths removed)"
  exit 0
fi

if [ -z "$binary" ]; then
  swift build -c release --product kmsfs
  binary=$(swift build -c release --show-bin-path)/kmsfs
fi
[ -x "$binary" ] || { echo "install.sh: $binary is not an executable" >&2; exit 66; }

installed=()
# A directory is recorded only if we create it, so uninstall never removes a shared one.
make_dir() {
  local dir=$1 missing=()
  while [ ! -d "$dir" ]; do missing=("$dir" "${missing[@]}"); dir=$(dirname "$dir"); done
  for dir in "${missing[@]}"; do mkdir -m 755 "$dir"; installed+=("$dir"); done
}
put() {  # put MODE SOURCE TARGET
  make_dir "$(dirname "$3")"
  install -m "$1" "$2" "$3"
  installed+=("$3")
}
link() {  # link TARGET NAME: refuses to replace what is not already ours
  make_dir "$(dirname "$2")"
  if [ -e "$2" ] && [ "$(readlink "$2")" != "$1" ]; then
    echo "install.sh: $2 exists and is not a link to $1; leaving it" >&2; exit 73
  fi
  ln -sfn "$1" "$2"
  installed+=("$2")
}

# Refuse before writing anything: the helpers must be free or already ours.
for helper in "$sbindir/mount.kmsfs" "$sbindir/mount.fuse.kmsfs"; do
  if [ -e "$helper" ] || [ -L "$helper" ]; then
    [ "$(readlink "$helper")" = "$prefix/bin/kmsfs" ] || { echo "install.sh: $helper exists and is not a link to $prefix/bin/kmsfs; leaving everything as it is" >&2; exit 73; }
  fi
done
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
put 755 "$binary" "$prefix/bin/kmsfs"
link "$prefix/bin/kmsfs" "$sbindir/mount.kmsfs"
link "$prefix/bin/kmsfs" "$sbindir/mount.fuse.kmsfs"

# Man pages from the commands' own help: build swift-argument-parser's
# generate-manual tool (the plugin builds it) and run it on the binary.
[ -n "$tool" ] || tool=$(manual_tool)
[ -n "$tool" ] && [ -x "$tool" ] || { echo "install.sh: swift-argument-parser's generate-manual tool did not build" >&2; exit 70; }
mkdir "$work/man"
"$tool" "$prefix/bin/kmsfs" --multi-page --section 1 --output-directory "$work/man"
for page in "$work"/man/*.1; do put 644 "$page" "$prefix/share/man/man1/$(basename "$page")"; done

for shell in bash zsh fish; do "$prefix/bin/kmsfs" --generate-completion-script "$shell" > "$work/completion.$shell"; done
put 644 "$work/completion.bash" "$prefix/share/bash-completion/completions/kmsfs"
put 644 "$work/completion.zsh" "$prefix/share/zsh/site-functions/_kmsfs"
put 644 "$work/completion.fish" "$prefix/share/fish/vendor_completions.d/kmsfs.fish"

sed "s|@BINDIR@|$prefix/bin|g" scripts/kmsfs@.service.in > "$work/kmsfs@.service"
put 644 "$work/kmsfs@.service" "$prefix/lib/systemd/system/kmsfs@.service"

make_dir "$(dirname "$manifest")"
# Installing again keeps what the first install created (its directories) on the list.
{ [ -f "$manifest" ] && cat "$manifest"; printf '%s\n' "${installed[@]}"; } | awk '!seen[$0]++' > "$manifest.new"
mv "$manifest.new" "$manifest"
echo "installed kmsfs to $prefix/bin/kmsfs (helpers in $sbindir, ${#installed[@]} paths in $manifest)"
