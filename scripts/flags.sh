# Flag parsing shared by the benchmark scripts (source it before lib.sh):
#
#   parse_flags --series=n --reps=reps --out=out -- "$@"
#
# sets the variable n from `--series VALUE`, and so on; `-h`/`--help` prints the script's
# header comment (its comment lines after the first line) and exits; any other argument, or a
# flag without its value, exits with status 2.
parse_flags() {
    local -A var_of=()
    while [ $# -gt 0 ] && [ "$1" != "--" ]; do
        var_of["${1%%=*}"]="${1#*=}"
        shift
    done
    shift
    while [ $# -gt 0 ]; do
        case "$1" in
            -h|--help)
                awk 'NR == 1 { next } /^#/ { print; next } { exit }' "$0"
                exit 0
                ;;
        esac
        if [ -z "${var_of[$1]:-}" ]; then
            echo "unknown argument: $1 (--help lists the flags)" >&2
            exit 2
        fi
        if [ $# -lt 2 ]; then
            echo "$1 needs a value" >&2
            exit 2
        fi
        printf -v "${var_of[$1]}" '%s' "$2"
        shift 2
    done
}
