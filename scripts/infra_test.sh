#!/usr/bin/env bash
# `make infra-test`: the CDK construct in infra/ against template.yaml, offline.
#   1. compile the construct and the example app (tsc), synthesize the example (cdk synth, no
#      credentials, no lookups) with cdk-nag's AwsSolutions rules: an unacknowledged finding fails;
#   2. parity: template.yaml after the SAM transform vs the synthesized template (infra/test/parity.py);
#   3. the parity test's self-test: a change to one side only must fail it (infra/test/test_parity.py);
#   4. cfn-lint over the synthesized template.
# Expects `npm ci` to have run in infra/ (the Makefile does it). HERALD_PYTHON: a Python with cfn-lint
# (and so samtranslator); default scripts/python.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
python=${HERALD_PYTHON:-$(scripts/python.sh)}
export CDK_DISABLE_CLI_TELEMETRY=true CDK_DISABLE_VERSION_CHECK=true
stack=HeraldExample
template=infra/cdk.out/$stack.template.json
step() { printf '\n== %s\n' "$*"; }
failed=()
check() {  # check NAME COMMAND...: runs every check, fails at the end if any did
  local name=$1; shift
  if ! "$@"; then failed+=("$name"); fi
}

# The construct takes cargo lambda's output; synth only hashes it, so an empty bootstrap per
# function crate stands in for the real build (make build) here.
artifacts=$(mktemp -d)
trap 'rm -rf "$artifacts"' EXIT
for manifest in functions/*/Cargo.toml; do
  name=$(basename "$(dirname "$manifest")")
  mkdir -p "$artifacts/$name" && : > "$artifacts/$name/bootstrap"
done

step "tsc + cdk synth $stack (offline, cdk-nag AwsSolutions)"
start=$SECONDS
rm -rf infra/cdk.out
(
  cd infra
  npx --no-install tsc -p .
  # --no-staging: each function's aws:asset:path names its artifact folder (parity matches on it).
  HERALD_ARTIFACTS_DIR="$artifacts" npx --no-install cdk synth "$stack" \
    --no-notices --no-version-reporting --no-staging --quiet --output cdk.out
)
echo "synthesized $template in $((SECONDS - start)) s; cdk-nag: no unacknowledged finding"

step "parity: template.yaml (SAM transform) vs $template"
check parity "$python" infra/test/parity.py --sam template.yaml --cdk "$template"

step "parity self-test: one-sided changes must fail"
check "parity self-test" "$python" infra/test/test_parity.py --sam template.yaml --cdk "$template"

step "cfn-lint $template"
# W3005 (DependsOn already implied by a GetAtt): CDK makes every function depend on its role
# and that role's policy; the role's half is redundant, and harmless.
check cfn-lint "$python" -c "import sys; from cfnlint.runner import main; sys.exit(main())" --ignore-checks W3005 -- "$template"

if [ ${#failed[@]} -gt 0 ]; then
  printf '\ninfra-test failed: %s\n' "${failed[*]}" >&2
  exit 1
fi
printf '\ninfra-test: synth with cdk-nag, parity, its self-test and cfn-lint passed\n'
