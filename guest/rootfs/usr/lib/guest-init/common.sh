# Shell functions the init scripts share (sourced by busybox sh).

# say MSG: a progress line on the console (and in /var/log/boot.log once /run exists).
say() {
  echo "guest-init: $*" >/dev/console
  [ -d /run/guest ] && echo "guest-init: $*" >>/run/guest/boot.log
  return 0
}

# ci KIND MSG: a cloud-init-like progress line, e.g. "cloud-init: ..." or "ci-info: ...".
ci() {
  kind=$1
  shift
  echo "$kind: $*" >/dev/console
  [ -d /var/log ] && echo "$kind: $*" >>/var/log/cloud-init.log
  return 0
}

# mounted DIR: is something mounted on DIR?
mounted() { awk -v d="$1" '$2 == d { found = 1 } END { exit !found }' /proc/mounts; }

uptime_s() { cut -d' ' -f1 /proc/uptime; }

# cmdline_arg NAME: the value of NAME=VALUE on the kernel command line.
cmdline_arg() {
  for a in $(cat /proc/cmdline); do
    case $a in "$1="*) echo "${a#*=}" && return 0 ;; esac
  done
  return 1
}

# debug_trace: with guest.debug on the kernel command line, trace the boot scripts on the console
# with the uptime on each line.
debug_trace() {
  if grep -qw guest.debug /proc/cmdline 2>/dev/null; then
    export PS4='+ $(cut -d" " -f1 /proc/uptime) '
    set -x
  fi
}

# load_boot_modules: the drivers of the devices present at boot (PCI and ACPI devices, then the
# virtio devices their drivers find, then SCSI disks), and evdev for acpid. File systems load on
# mount (the kernel asks modprobe for fs-<type>).
load_boot_modules() {
  modprobe -a -q $(sort -u /sys/bus/pci/devices/*/modalias /sys/bus/acpi/devices/*/modalias 2>/dev/null) 2>/dev/null
  modprobe -a -q evdev $(sort -u /sys/bus/virtio/devices/*/modalias 2>/dev/null) 2>/dev/null
  [ -d /sys/bus/scsi/devices ] && modprobe -a -q $(sort -u /sys/bus/scsi/devices/*/modalias 2>/dev/null) 2>/dev/null
  return 0
}

# load_modules: every module in /etc/modules (for devices hotplugged later); run after boot.
load_modules() {
  modprobe -a -q $(grep -v '^#' /etc/modules) 2>/dev/null
  return 0
}

# truthy VALUE: YAML's true.
truthy() {
  case $1 in true | True | TRUE | yes | Yes | YES | on | On | ON | y | Y | 1) return 0 ;; esac
  return 1
}

# val FILE: a scalar from a yaml2tree tree ("" if absent or null).
val() {
  [ -f "$1" ] || return 1
  v=$(cat "$1")
  case $v in null | Null | NULL | "~") v="" ;; esac
  printf '%s' "$v"
}

# items DIR: the entries of a sequence (or mapping) directory, sequences in order.
items() {
  [ -d "$1" ] || return 0
  ls "$1" | sort -n
}

# yaml2tree FILE DIR: parse a YAML/JSON file into DIR (see yaml2tree.awk).
yaml2tree() {
  rm -rf "$2"
  awk -v out="$2" -f /usr/lib/guest-init/yaml2tree.awk "$1"
}

# mask2prefix A.B.C.D: the prefix length of a dotted netmask.
mask2prefix() {
  n=0
  for o in $(echo "$1" | tr . ' '); do
    case $o in
      255) n=$((n + 8)) ;; 254) n=$((n + 7)) ;; 252) n=$((n + 6)) ;; 248) n=$((n + 5)) ;;
      240) n=$((n + 4)) ;; 224) n=$((n + 3)) ;; 192) n=$((n + 2)) ;; 128) n=$((n + 1)) ;;
    esac
  done
  echo "$n"
}
