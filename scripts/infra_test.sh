#!/usr/bin/env bash
# `make infra-test`: the CDK construct in infra/ against template.yaml, offline.
#   1. synthesize the example as a newcomer would (cdk synth; cdk.json's app runs tsc first; no
#      credentials, no lookups) with cdk-nag's AwsSolutions rules: an unacknowledged finding fails;
#      then again with X-Ray tracing on (-c tracing=true, into infra/cdk.out.traced);
#   2. parity: template.yaml after the SAM transform vs the synthesized template (infra/test/parity.py),
#      and template.yaml with Tracing=Active vs the traced one;
#   3. the parity test's self-test: a change to one side only must fail it (infra/test/test_parity.py);
#   4. cfn-lint over the two synthesized templates.
# Expects `npm ci` to have run in infra/ (the Makefile does it). HERALD_PYTHON: a Python with cfn-lint
# (and so samtranslator); default scripts/python.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
python=${HERALD_PYTHON:-$(scripts/python.sh)}
export CDK_DISABLE_CLI_TELEMETRY=true CDK_DISABLE_VERSION_CHECK=true
stack=HeraldExample
template=infra/cdk.out/$stack.template.json
traced=infra/cdk.out.traced/$stack.template.json
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

synth() {  # synth OUTPUT_DIR [CDK ARGS...], in infra/
  local output=$1; shift
  rm -rf "$output"
  # --no-staging: each function's aws:asset:path names its artifact folder (parity matches on it).
  HERALD_ARTIFACTS_DIR="$artifacts" npx --no-install cdk synth "$stack" "$@" \
    --no-notices --no-version-reporting --no-staging --quiet --output "$output"
}

step "cdk synth $stack (offline, cdk-nag AwsSolutions; cdk.json's app compiles with tsc first)"
start=$SECONDS
# No tsc here: a fresh checkout's `npx cdk synth` must work as is, and this is that run.
rm -rf infra/dist
(cd infra && synth cdk.out)
echo "synthesized $template in $((SECONDS - start)) s; cdk-nag: no unacknowledged finding"

step "cdk synth $stack -c tracing=true (X-Ray active tracing, cdk-nag AwsSolutions)"
start=$SECONDS
(cd infra && synth cdk.out.traced -c tracing=true)
echo "synthesized $traced in $((SECONDS - start)) s; cdk-nag: no unacknowledged finding"

step "parity: template.yaml (SAM transform) vs $template"
check parity "$python" infra/test/parity.py --sam template.yaml --cdk "$template"

step "parity: template.yaml with Tracing=Active vs $traced"
check "parity (traced)" "$python" infra/test/parity.py --sam template.yaml --cdk "$traced" --sam-parameter Tracing=Active

step "parity self-test: one-sided changes must fail"
check "parity self-test" "$python" infra/test/test_parity.py --sam template.yaml --cdk "$template" --cdk-traced "$traced"

step "cfn-lint $template $traced"
# W3005 (DependsOn already implied by a GetAtt): CDK makes every function depend on its role
# and that role's policy; the role's half is redundant, and harmless.
check cfn-lint "$python" -c "import sys; from cfnlint.runner import main; sys.exit(main())" --ignore-checks W3005 -- "$template" "$traced"

if [ ${#failed[@]} -gt 0 ]; then
  printf '\ninfra-test failed: %s\n' "${failed[*]}" >&2
  exit 1
fi
printf '\ninfra-test: both synths with cdk-nag, parity (untraced and traced), its self-test and cfn-lint passed\n'
