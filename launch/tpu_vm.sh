#!/usr/bin/env bash
# launch/tpu_vm.sh: create, set up, run rt_jax on, and tear down a Cloud TPU VM with gcloud.
#
# Usage:
#   launch/tpu_vm.sh SUBCOMMAND --name=NAME --zone=ZONE [flags] [--config.KEY=VALUE ...]
#
# Subcommands (each prints its gcloud commands, prefixed with '+ ', before running them):
#   create       gcloud compute tpus tpu-vm create NAME (needs --accelerator_type)
#   setup        on every worker (--worker=all): apt-get python/tmux if missing, clone --repo into
#                ~/rt_jax (or fetch), check out --ref, make ~/rt_jax/.venv, pip install
#                requirements.txt + jax[tpu]; idempotent, run it again after pushing new commits
#   run          on every worker (--worker=all): RT_JAX_COORDINATOR=auto python -m rt_jax.main
#                --config=C --workdir=W [--config.KEY=VALUE ...] in a detached tmux session
#                'rt_jax' (set --config.mesh=... to shape the slice's devices); each host appends to
#                its own log, W/logs/host_$(hostname).log (W relative to ~/rt_jax unless absolute)
#   wait         on every worker: block until the tmux session 'rt_jax' ends, then print the
#                log's last lines (the last one is 'rt_jax.main exited with status N')
#   tensorboard  TensorBoard on worker 0 over W/tb, forwarded to http://localhost:PORT (Ctrl-C ends
#                both)
#   copy_back    gcloud ... scp --recurse --worker=0 of W into LOCAL_DIR (W arrives as
#                LOCAL_DIR/$(basename W))
#   delete       gcloud compute tpus tpu-vm delete NAME --quiet
#   all          create -> setup -> run -> wait -> copy_back -> delete; if a step fails the VM is
#                left up and the last line says so
#
# Flags (only the --key=value form):
#   --name=NAME              TPU VM name (required)
#   --zone=ZONE              zone, e.g. us-central2-b for v4, us-west4-a for v5e (required)
#   --accelerator_type=TYPE  e.g. v4-8 (one host), v4-32, v5litepod-16 (multi-host); create, all
#   --version=RUNTIME        TPU software version. Default by generation, from Google's table at
#                            https://cloud.google.com/tpu/docs/runtimes: v6e-* v2-alpha-tpuv6e,
#                            v5p-* v2-alpha-tpuv5, v5litepod-* v2-alpha-tpuv5-lite, anything else
#                            (v4 and older) tpu-ubuntu2204-base. These names change: check the
#                            current list with `gcloud compute tpus tpu-vm versions list --zone=ZONE`
#   --project=PROJECT        passed to every gcloud command (default: gcloud's configured project)
#   --spot                   create a Spot VM (cheaper, can be preempted; a rerun of `run` with the
#                            same workdir resumes, but a preempted VM loses its local disk)
#   --queued                 create through a queued resource (`gcloud compute tpus queued-resources
#                            create`, then wait until it is ACTIVE), as the larger slices and some
#                            generations require; delete removes the queued resource too
#   --repo=URL               git URL the workers clone (default: `origin` of this checkout); it must
#                            be cloneable from the VM (public, or credentials you set up there)
#   --ref=REF                commit, branch or tag to check out (default: this checkout's HEAD
#                            commit, which must be pushed to --repo)
#   --python=PYTHON          interpreter for the venv (default python3.11, the version
#                            requirements.txt is pinned for; apt-get installs it when missing, as
#                            on the Ubuntu 22.04 images; on a 24.04 image say --python=python3.12)
#   --config=CONFIG          configs/NAME.py[:PRESET], relative to the checkout (run, all)
#   --workdir=DIR            run directory, relative to ~/rt_jax or absolute (run, wait,
#                            tensorboard, copy_back, all)
#   --config.KEY=VALUE       passed through to python -m rt_jax.main unchanged, in order
#   --local_dir=DIR          where copy_back puts the workdir (default runs/NAME, relative to the
#                            current directory)
#   --port=PORT              local and remote TensorBoard port (default 6006)
#   --dry_run                print the commands, run nothing (the config is still checked)
#   -h, --help               this text
#
# Examples:
#   launch/tpu_vm.sh all --name=rt-v4 --zone=us-central2-b --accelerator_type=v4-8 \
#       --config=configs/curriculum.py:smollm2_quick --workdir=runs/quick --dry_run
#   launch/tpu_vm.sh run --name=rt-v5e --zone=us-west4-a --config=configs/curriculum.py:smollm2_paper \
#       --workdir=runs/paper_exploit --config.ei.variant=exploit_only
#   launch/tpu_vm.sh tensorboard --name=rt-v5e --zone=us-west4-a --workdir=runs/paper_exploit
#
# Notes:
#   - Multi-host slices (v4-16 and up, v5litepod-16 and up) run one process per host, all started
#     by `--worker=all`. RT_JAX_COORDINATOR=auto makes rt_jax.main call
#     jax.distributed.initialize() without arguments before its first computation; JAX then finds
#     the slice topology itself (on a one-host VM too, as one process).
#     Only process 0 writes TensorBoard; copy_back fetches worker 0's workdir, so other workers'
#     logs stay on them (gcloud compute tpus tpu-vm scp --worker=N NAME:rt_jax/W/logs DIR).
#     Each host's workdir is on its own disk: checkpoints sharded over hosts need a directory that
#     every host sees (a GCS bucket or NFS) to be complete anywhere.
#   - gcloud's help asks for `ssh-add ~/.ssh/google_compute_engine` before `--worker=all` commands.
#   - Watch a run: gcloud compute tpus tpu-vm ssh NAME --zone=ZONE --worker=0 -- -t tmux attach -t rt_jax
#   - Bad input (unknown flag or subcommand, missing or malformed flag) prints one `error:` line on
#     stderr and exits 2 before any gcloud command. No project or credential is stored here.
#   - run and all check --config and its overrides here first, with this checkout's rt_jax
#     (`rt_jax.main --dry_run` on as many simulated CPU devices as the slice has chips, in a
#     throwaway workdir; the interpreter is $RT_JAX_LOCAL_PYTHON, else .venv/bin/python, else
#     python3): a typo'd key or preset fails before a VM is created or used. Where no local
#     interpreter has rt_jax's packages, a warning says the check was skipped.
set -euo pipefail

readonly SUBCOMMANDS='create setup run wait tensorboard copy_back delete all'
readonly SESSION='rt_jax'                  # tmux session on every worker
# jax[tpu] pulls libtpu. Recent releases are on PyPI as `libtpu`; older ones (libtpu-nightly) only
# in Google's find-links index, so pip gets both places.
readonly LIBTPU_URL='https://storage.googleapis.com/jax-releases/libtpu_releases.html'
SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
readonly SCRIPT_DIR
readonly REPO_ROOT="${SCRIPT_DIR%/*}"

usage() { sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p;}' "${BASH_SOURCE[0]}"; }

usage_error() {
  printf 'error: %s (see launch/tpu_vm.sh --help)\n' "$*" >&2
  exit 2
}

# One shell word that bash or zsh reads back as $1: bare if harmless, else single-quoted.
quote_word() {
  local s=$1 out="'" safe='^[A-Za-z0-9_./:@%+,-][A-Za-z0-9_./:=@%+,-]*$'
  if [[ $s =~ $safe ]]; then
    printf '%s' "$s"
    return
  fi
  while [[ $s == *"'"* ]]; do
    out+="${s%%"'"*}'\\''"
    s=${s#*"'"}
  done
  printf '%s' "$out$s'"
}

# The argument list as one line that can be pasted into a shell (--flag='value' for readability).
render() {
  local line='' arg word flag_re='^--[A-Za-z0-9_.-]+='
  for arg in "$@"; do
    if [[ $arg =~ $flag_re ]]; then
      word="${arg%%=*}=$(quote_word "${arg#*=}")"
    else
      word=$(quote_word "$arg")
    fi
    line+="${line:+ }$word"
  done
  printf '%s' "$line"
}

# Prints a command with '+ ', then runs it unless --dry_run.
execute() {
  printf '+ %s\n' "$(render "$@")"
  if (( DRY_RUN )); then
    return 0
  fi
  "$@"
}

# Statements joined into one line for `gcloud ... ssh --command`.
script() {
  local line='' statement
  for statement in "$@"; do
    line+="${line:+; }$statement"
  done
  printf '%s' "$line"
}

# --- flags -------------------------------------------------------------------------------------
NAME='' ZONE='' ACCELERATOR_TYPE='' VERSION='' PROJECT='' SPOT=0 QUEUED=0 REPO='' REF='' PYTHON='python3.11'
CONFIG='' WORKDIR='' LOCAL_DIR='' PORT='6006' DRY_RUN=0 SUBCOMMAND=''
OVERRIDES=()
for arg in "$@"; do
  case $arg in
    -h | --help) usage; exit 0 ;;
    --name=*) NAME=${arg#*=} ;;
    --zone=*) ZONE=${arg#*=} ;;
    --accelerator_type=*) ACCELERATOR_TYPE=${arg#*=} ;;
    --version=*) VERSION=${arg#*=} ;;
    --project=*) PROJECT=${arg#*=} ;;
    --spot) SPOT=1 ;;
    --queued) QUEUED=1 ;;
    --repo=*) REPO=${arg#*=} ;;
    --ref=*) REF=${arg#*=} ;;
    --python=*) PYTHON=${arg#*=} ;;
    --config=*) CONFIG=${arg#*=} ;;
    --config.*) OVERRIDES+=("$arg") ;;
    --workdir=*) WORKDIR=${arg#*=} ;;
    --local_dir=*) LOCAL_DIR=${arg#*=} ;;
    --port=*) PORT=${arg#*=} ;;
    --dry_run) DRY_RUN=1 ;;
    --spot=* | --queued=* | --dry_run=*) usage_error "${arg%%=*} takes no value" ;;
    --name | --zone | --accelerator_type | --version | --project | --repo | --ref | --python | \
      --config | --workdir | --local_dir | --port)
      usage_error "$arg needs a value: $arg=VALUE" ;;
    -*) usage_error "unknown flag $(quote_word "$arg")" ;;
    *)
      [[ -z $SUBCOMMAND ]] || usage_error "unexpected argument $(quote_word "$arg") after subcommand $SUBCOMMAND"
      SUBCOMMAND=$arg ;;
  esac
done

# uses SUBCOMMAND...: whether the subcommand given is one of them.
uses() {
  local s
  for s in "$@"; do
    [[ $SUBCOMMAND != "$s" ]] || return 0
  done
  return 1
}
# need FLAG VALUE: FLAG is required by this subcommand.
need() { [[ -n $2 ]] || usage_error "$SUBCOMMAND needs --$1=..."; }

[[ -n $SUBCOMMAND ]] || usage_error "no subcommand; one of: $SUBCOMMANDS"
# shellcheck disable=SC2086  # word splitting of the list is intended
uses $SUBCOMMANDS || usage_error "unknown subcommand $(quote_word "$SUBCOMMAND"); one of: $SUBCOMMANDS"

need name "$NAME"
need zone "$ZONE"
NAME_RE='^[a-z]([-a-z0-9]*[a-z0-9])?$' ZONE_RE='^[a-z0-9-]+$' TYPE_RE='^v[0-9][a-z0-9]*-[0-9]+$'
WORKDIR_RE='^[A-Za-z0-9_./@%+,:-]+$' PYTHON_RE='^[A-Za-z0-9_./-]+$' PORT_RE='^[0-9]+$'
[[ $NAME =~ $NAME_RE ]] ||
  usage_error "--name=$(quote_word "$NAME"): lowercase letters, digits and '-', starting with a letter"
[[ $ZONE =~ $ZONE_RE ]] || usage_error "--zone=$(quote_word "$ZONE") is not a zone name (e.g. us-central2-b)"
if uses create all; then
  need accelerator_type "$ACCELERATOR_TYPE"
  [[ $ACCELERATOR_TYPE =~ $TYPE_RE ]] ||
    usage_error "--accelerator_type=$(quote_word "$ACCELERATOR_TYPE") is not a TPU type (e.g. v4-8, v5litepod-16)"
  if [[ -z $VERSION ]]; then
    case $ACCELERATOR_TYPE in
      v6e-*) VERSION='v2-alpha-tpuv6e' ;;
      v5p-*) VERSION='v2-alpha-tpuv5' ;;
      v5litepod-*) VERSION='v2-alpha-tpuv5-lite' ;;
      *) VERSION='tpu-ubuntu2204-base' ;;
    esac
  fi
fi
if uses run all; then
  need config "$CONFIG"
fi
if uses run wait tensorboard copy_back all; then
  need workdir "$WORKDIR"
  # The workdir lands unquoted in scp's remote path and in log names: keep it to plain characters.
  [[ $WORKDIR =~ $WORKDIR_RE && $WORKDIR != -* ]] ||
    usage_error "--workdir=$(quote_word "$WORKDIR"): use letters, digits and ._/@%+,:- only (relative to ~/rt_jax, or absolute)"
fi
if uses setup all; then
  [[ $PYTHON =~ $PYTHON_RE ]] || usage_error "--python=$(quote_word "$PYTHON") is not an interpreter name"
fi
if uses tensorboard && ! { [[ $PORT =~ $PORT_RE ]] && (( 10#$PORT > 0 && 10#$PORT < 65536 )); }; then
  usage_error "--port=$(quote_word "$PORT") is not a port"
fi
[[ -n $LOCAL_DIR ]] || LOCAL_DIR="runs/$NAME"

# The devices JAX sees on a slice: TensorCores for v2/v3, chips for v4/v5p (two TensorCores each,
# one device) and for v5e/v6e (one TensorCore each).
slice_devices() {
  local count=${1##*-}
  case $1 in
    v4-* | v5p-*) echo $(( count / 2 > 0 ? count / 2 : 1 )) ;;
    *) echo "$count" ;;
  esac
}

# run/all: the config and its overrides through rt_jax.main --dry_run here, before any gcloud call.
check_config_locally() {
  local py=${RT_JAX_LOCAL_PYTHON:-} devices=${1:-1} scratch out
  if [[ -z $py ]]; then
    py="$REPO_ROOT/.venv/bin/python"
    [[ -x $py ]] || py=python3
  fi
  if ! (cd "$REPO_ROOT" && "$py" -c 'import jax, ml_collections, rt_jax.main' >/dev/null 2>&1); then
    printf 'warning: no local interpreter with rt_jax'"'"'s packages (%s); --config not checked here\n' "$py" >&2
    return 0
  fi
  scratch=$(mktemp -d)
  if ! out=$(cd "$REPO_ROOT" && JAX_PLATFORMS=cpu XLA_FLAGS="--xla_force_host_platform_device_count=$devices" \
      "$py" -m rt_jax.main "--config=$CONFIG" "--workdir=$scratch/w" ${OVERRIDES[@]+"${OVERRIDES[@]}"} \
      --dry_run 2>&1 >/dev/null); then
    rm -rf "$scratch"
    usage_error "--config: $(printf '%s\n' "$out" | sed -n 's/^error: //p' | head -n 1)"
  fi
  rm -rf "$scratch"
}
if uses run all; then
  if [[ -n $ACCELERATOR_TYPE ]]; then
    check_config_locally "$(slice_devices "$ACCELERATOR_TYPE")"
  else
    check_config_locally 1
  fi
fi

REF_DEFAULTED=0
if uses setup all; then
  if [[ -z $REPO ]]; then
    REPO=$(git -C "$REPO_ROOT" remote get-url origin 2>/dev/null) ||
      usage_error "--repo not given and $REPO_ROOT has no 'origin' remote: pass --repo=URL"
  fi
  if [[ -z $REF ]]; then
    REF=$(git -C "$REPO_ROOT" rev-parse --verify -q 'HEAD^{commit}' 2>/dev/null) ||
      usage_error "--ref not given and $REPO_ROOT has no HEAD commit: pass --ref=REF"
    REF_DEFAULTED=1
  fi
fi

# --- input is good: from here on, commands ------------------------------------------------------
if (( REF_DEFAULTED )); then
  if [[ -n $(git -C "$REPO_ROOT" status --porcelain --untracked-files=no 2>/dev/null) ]]; then
    printf 'warning: uncommitted changes in %s stay here; the workers check out %s\n' "$REPO_ROOT" "$REF" >&2
  fi
  if [[ -z $(git -C "$REPO_ROOT" branch -r --contains "$REF" 2>/dev/null) ]]; then
    printf 'warning: %s is on no remote-tracking branch here; push it to %s or setup cannot check it out\n' \
      "$REF" "$REPO" >&2
  fi
fi

GLOBAL_FLAGS=("--zone=$ZONE")
[[ -z $PROJECT ]] || GLOBAL_FLAGS+=("--project=$PROJECT")
TPU_VM=(gcloud compute tpus tpu-vm)
WD=$(quote_word "$WORKDIR")
LOG="$WD/logs/host_\$(hostname).log"  # $(hostname) is expanded on each worker

ssh_all() { execute "${TPU_VM[@]}" ssh "$NAME" "${GLOBAL_FLAGS[@]}" --worker=all --command="$1"; }

QUEUED_RESOURCES=(gcloud compute tpus queued-resources)

do_create() {
  local flags=("--accelerator-type=$ACCELERATOR_TYPE")
  if (( QUEUED )); then
    flags+=("--node-id=$NAME" "--runtime-version=$VERSION")
    if (( SPOT )); then
      flags+=(--spot)
    fi
    execute "${QUEUED_RESOURCES[@]}" create "$NAME" "${GLOBAL_FLAGS[@]}" "${flags[@]}"
    do_wait_active
    return
  fi
  flags+=("--version=$VERSION")
  if (( SPOT )); then
    flags+=(--spot)
  fi
  execute "${TPU_VM[@]}" create "$NAME" "${GLOBAL_FLAGS[@]}" "${flags[@]}"
}

# A queued resource is granted when capacity frees up: poll its state until ACTIVE (the VM exists
# then), and stop on a state it cannot leave.
do_wait_active() {
  local state
  printf '+ %s\n' "$(render "${QUEUED_RESOURCES[@]}" describe "$NAME" "${GLOBAL_FLAGS[@]}" '--format=value(state.state)') (every 60 s until ACTIVE)"
  (( DRY_RUN )) && return 0
  while true; do
    state=$("${QUEUED_RESOURCES[@]}" describe "$NAME" "${GLOBAL_FLAGS[@]}" '--format=value(state.state)')
    case $state in
      ACTIVE) return 0 ;;
      FAILED | SUSPENDED) printf 'error: queued resource %s is %s\n' "$NAME" "$state" >&2; return 1 ;;
      *) printf '%s: queued resource %s is %s\n' "$(date +%H:%M:%S)" "$NAME" "${state:-unknown}" >&2; sleep 60 ;;
    esac
  done
}

# shellcheck disable=SC2016  # the single-quoted parts expand on the workers
do_setup() {
  ssh_all "$(script \
    'set -eu' \
    'cd "$HOME"' \
    "if ! command -v tmux >/dev/null || ! $PYTHON -c \"import ensurepip\" >/dev/null 2>&1; then sudo apt-get -q update && sudo env DEBIAN_FRONTEND=noninteractive apt-get -q -y -o DPkg::Lock::Timeout=600 install tmux $PYTHON $PYTHON-venv; fi" \
    "if [ ! -d rt_jax/.git ]; then git clone -q $(quote_word "$REPO") rt_jax; fi" \
    'cd rt_jax' \
    "git remote set-url origin $(quote_word "$REPO")" \
    'git fetch -q --tags origin' \
    "ref=$(quote_word "$REF")" \
    'if git rev-parse -q --verify "origin/$ref^{commit}" >/dev/null; then ref="origin/$ref"; fi' \
    'git checkout -q --detach "$ref"' \
    "if [ ! -x .venv/bin/python ]; then $PYTHON -m venv .venv; fi" \
    '.venv/bin/python -m pip install -q --upgrade pip' \
    'jax_version=$(sed -n "s/^jax==//p" requirements.txt)' \
    ".venv/bin/python -m pip install -q -r requirements.txt \"jax[tpu]\${jax_version:+==\$jax_version}\" -f $LIBTPU_URL" \
    'echo "$(hostname): rt_jax at $(git rev-parse --short HEAD), jax $(.venv/bin/python -c "import jax; print(jax.__version__)")"')"
}

# shellcheck disable=SC2016  # the single-quoted parts expand on the workers
do_run() {
  local main job
  main=$(render .venv/bin/python -m rt_jax.main "--config=$CONFIG" "--workdir=$WORKDIR" \
    ${OVERRIDES[@]+"${OVERRIDES[@]}"})
  # Every host joins one run (rt_jax.core.sharding.initialize_distributed); JAX reads the slice.
  job="RT_JAX_COORDINATOR=auto $main >> $LOG 2>&1; echo \"rt_jax.main exited with status \$?\" >> $LOG"
  ssh_all "$(script \
    'set -eu' \
    'cd "$HOME/rt_jax"' \
    "if tmux has-session -t $SESSION 2>/dev/null; then echo \"error: \$(hostname) is still running tmux session $SESSION\" >&2; exit 1; fi" \
    "mkdir -p $WD/logs" \
    "tmux new-session -d -s $SESSION $(quote_word "$job")" \
    "echo \"\$(hostname): started, log ~/rt_jax/$LOG\"")"
}

# shellcheck disable=SC2016  # the single-quoted parts expand on the workers
do_wait() {
  ssh_all "$(script \
    'set -eu' \
    'cd "$HOME/rt_jax"' \
    'n=0' \
    "while tmux has-session -t $SESSION 2>/dev/null; do sleep 60; n=\$((n + 1)); if [ \$((n % 10)) -eq 0 ]; then echo \"\$(hostname): running for \$n min\"; fi; done" \
    "if [ -f $LOG ]; then tail -n 3 $LOG; else echo \"\$(hostname): no log\"; fi")"
}

do_tensorboard() {
  if (( ! DRY_RUN )); then
    printf 'TensorBoard of %s at http://localhost:%s (Ctrl-C stops it)\n' "$WORKDIR" "$PORT" >&2
  fi
  execute "${TPU_VM[@]}" ssh "$NAME" "${GLOBAL_FLAGS[@]}" --worker=0 \
    --command="cd \"\$HOME/rt_jax\" && exec .venv/bin/tensorboard --logdir=$WD/tb --host=localhost --port=$PORT" \
    -- -t -L "$PORT:localhost:$PORT"
}

do_copy_back() {
  local remote=$WORKDIR
  [[ $remote == /* ]] || remote="rt_jax/$remote"   # scp's relative paths start in the home directory
  execute mkdir -p "$LOCAL_DIR"
  execute "${TPU_VM[@]}" scp --recurse --worker=0 "${GLOBAL_FLAGS[@]}" "$NAME:$remote" "$LOCAL_DIR"
}

do_delete() {
  if (( QUEUED )); then
    execute "${QUEUED_RESOURCES[@]}" delete "$NAME" "${GLOBAL_FLAGS[@]}" --quiet --force
  else
    execute "${TPU_VM[@]}" delete "$NAME" "${GLOBAL_FLAGS[@]}" --quiet
  fi
}

STEP=''
on_exit() {
  local rc=$?
  if (( rc != 0 )) && [[ -n $STEP ]]; then
    printf 'error: %s failed (exit %s); the TPU VM %s may still be up and billing: %s\n' "$STEP" "$rc" \
      "$NAME" "$(render "$0" delete "--name=$NAME" "${GLOBAL_FLAGS[@]}")" >&2
  fi
}

if [[ $SUBCOMMAND == all ]]; then
  trap on_exit EXIT
  for STEP in create setup run wait copy_back delete; do
    "do_$STEP"
  done
else
  "do_$SUBCOMMAND"
fi
