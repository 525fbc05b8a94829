"""Run the real __main__.py for a stack under Pulumi mocks, and record what it asks AWS for.

Data-source calls get answers shaped like AWS's for a default VPC in eu-west-1.
`run_program` returns every registered resource (type token, name, inputs,
options) and every stack export, resolved.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pulumi
import yaml
from pulumi.runtime import rpc
from pulumi.runtime.mocks import MockMonitor

from outsystems_redis.tools import stack_file

ROOT = Path(__file__).resolve().parents[2]

# Instance types as AWS describes them (aws ec2 describe-instance-types).
INSTANCE_TYPES = {
    "c5.large": {"defaultVcpus": 2, "memorySize": 4096, "sustainedClockSpeed": 3.4, "burstable": False},
    "c5.xlarge": {"defaultVcpus": 4, "memorySize": 8192, "sustainedClockSpeed": 3.4, "burstable": False},
    "r5.xlarge": {"defaultVcpus": 4, "memorySize": 32768, "sustainedClockSpeed": 3.1, "burstable": False},
    # Not offered in every zone (as some types are not, in some regions).
    "c5n.xlarge": {"defaultVcpus": 4, "memorySize": 10752, "sustainedClockSpeed": 3.4, "burstable": False,
                   "zones": ["eu-west-1a", "eu-west-1b", "eu-west-1-lhr-1a"]},
    "m5.large": {"defaultVcpus": 2, "memorySize": 8192, "sustainedClockSpeed": 3.1, "burstable": False},
    "t3.micro": {"defaultVcpus": 2, "memorySize": 1024, "sustainedClockSpeed": 2.5, "burstable": True},
    "t3.xlarge": {"defaultVcpus": 4, "memorySize": 16384, "sustainedClockSpeed": 2.5, "burstable": True},
    "c6g.xlarge": {
        "defaultVcpus": 4,
        "memorySize": 8192,
        "sustainedClockSpeed": 2.6,
        "burstable": False,
        "arch": ["arm64"],
    },
}
# The region's zones as AWS lists them (opt-in status), including an opted-in Local
# Zone that sorts before the region's own zones.
ZONES = {
    "eu-west-1c": "opt-in-not-required",
    "eu-west-1a": "opt-in-not-required",
    "eu-west-1-lhr-1a": "opted-in",
    "eu-west-1b": "opt-in-not-required",
}
# Canonical's public AMI parameters, as SSM answers them.
AMI_PARAMETERS = {
    "/aws/service/canonical/ubuntu/server/20.04/stable/current/amd64/hvm/ebs-gp2/ami-id": "ami-0123456789abcdef0",
    "/aws/service/canonical/ubuntu/server/24.04/stable/current/amd64/hvm/ebs-gp3/ami-id": "ami-0a24b24c24d24e24f",
}
ACCOUNT = "111122223333"
# The deploying role sits under a path, which its assumed-role session ARN leaves out (IAM does).
DEPLOYER_ROLE_PATH = "ci/"
VPC_ID = "vpc-0a1b2c3d4e5f60718"
# A default VPC's own subnets (one /20 per zone, public), as EC2 lists them.
DEFAULT_SUBNETS = {
    "subnet-0aaaaaaaaaaaaaaa1": {"cidr": "172.31.0.0/20", "default": True, "tags": {}},
    "subnet-0bbbbbbbbbbbbbbb2": {"cidr": "172.31.16.0/20", "default": True, "tags": {}},
}
VPC_CIDR = "172.31.0.0/16"
AMI_ID = "ami-0123456789abcdef0"


@dataclass
class Recorded:
    type: str
    name: str
    inputs: dict[str, Any]
    protect: bool = False
    ignore_changes: tuple[str, ...] = ()
    delete_before_replace: bool = False
    dependencies: tuple[str, ...] = ()
    secret_inputs: frozenset[str] = frozenset()
    parent: str = ""
    urn: str = ""
    provider: str = ""  # the provider reference the resource was registered with, "" for the default


@dataclass
class Program:
    resources: list[Recorded]
    exports: dict[str, Any]
    secret_exports: set[str]
    unknown_exports: set[str] = field(default_factory=set)  # preview: not known until the update runs
    calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    call_providers: list[str] = field(default_factory=list)  # the provider reference of each call, "" for none

    def of_type(self, token: str) -> list[Recorded]:
        return [r for r in self.resources if r.type == token]

    def named(self, name: str) -> Recorded:
        (found,) = [r for r in self.resources if r.name == name]
        return found


def _secret_keys(struct: Any) -> frozenset[str]:
    """Top-level input names whose value the program sent as a secret (or with a secret inside)."""

    def has_secret(value: Any) -> bool:
        kind = value.WhichOneof("kind")
        if kind == "struct_value":
            fields = value.struct_value.fields
            sig = fields.get(rpc._special_sig_key)
            if sig is not None and sig.string_value == rpc._special_secret_sig:
                return True
            return any(has_secret(v) for v in fields.values())
        if kind == "list_value":
            return any(has_secret(v) for v in value.list_value.values)
        return False

    return frozenset(k for k, v in struct.fields.items() if has_secret(v))


class RecordingMonitor(MockMonitor):
    """The mock monitor, also keeping the resource options the program asked for."""

    def __init__(self, mocks: AwsMocks) -> None:
        super().__init__(mocks)
        self.program = mocks.program

    def RegisterResource(self, request: Any) -> Any:  # noqa: N802 (gRPC name)
        response = super().RegisterResource(request)
        if request.type != "pulumi:pulumi:Stack":
            self.program.resources.append(
                Recorded(
                    type=request.type,
                    name=request.name,
                    inputs=rpc_inputs(request),
                    protect=bool(request.protect),
                    ignore_changes=tuple(request.ignoreChanges),
                    delete_before_replace=bool(request.deleteBeforeReplace),
                    dependencies=tuple(request.dependencies),
                    secret_inputs=_secret_keys(request.object),
                    parent=request.parent,
                    urn=response.urn,
                    provider=request.provider,
                )
            )
        return response


def _unwrap(value: Any) -> Any:
    """Secrets arrive wrapped in a signature map; the value is what the program asked for."""
    if isinstance(value, dict):
        if value.get(rpc._special_sig_key) == rpc._special_secret_sig:
            return _unwrap(value["value"])
        return {k: _unwrap(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_unwrap(v) for v in value]
    return value


def rpc_inputs(request: Any) -> dict[str, Any]:
    return _unwrap(dict(rpc.deserialize_properties(request.object)))


def role_unique_id(resource_name: str) -> str:
    """The mocked role's unique id: IAM's form (AROA and 17 more), stable across processes. With an instance's
    id it makes that server's session, which names its own metric namespace."""
    return "AROA" + hashlib.sha256(resource_name.encode()).hexdigest()[:17].upper()


SERVER_ROLE_ID = role_unique_id("outsystems-redis-server-role")


def session_of(server: str) -> str:
    """A mocked server's session (monitoring.server_session): the role's id and its instance's mocked id."""
    return f"{SERVER_ROLE_ID}:{server}-instance-id"


class AwsMocks(pulumi.runtime.Mocks):
    def __init__(self, program: Program, preview: bool = False, default_vpc: bool = True,
                 subnets: dict[str, dict] | None = None) -> None:
        self.program = program
        self.preview = preview
        self.default_vpc = default_vpc  # an account whose region has a default VPC (most do; some deleted it)
        self.subnets = DEFAULT_SUBNETS if subnets is None else subnets  # the VPC's subnets before this program

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict]:
        state = dict(args.inputs)
        rid = f"{args.name}-id"
        if args.typ == "aws:ec2/subnet:Subnet":
            # Stable across processes (str hash() is salted per process): the URN snapshot compares ids.
            rid = "subnet-" + hashlib.sha256(args.name.encode()).hexdigest()[:12]
        if args.typ == "aws:ec2/securityGroup:SecurityGroup":
            # The store's own group; any other (an example's front-end group) gets an id of its own.
            rid = "sg-0feedfacecafe0001" if args.name.endswith("-network-redis") else f"{args.name}-id"
        if args.typ == "aws:ssm/parameter:Parameter":
            state["arn"] = f"arn:aws:ssm:eu-west-1:111122223333:parameter{args.inputs['name']}"
        if args.typ == "random:index/randomPassword:RandomPassword":
            state["result"] = "A1b2" + "x" * (int(args.inputs["length"]) - 4)
        if args.typ in ("aws:iam/instanceProfile:InstanceProfile", "aws:iam/role:Role"):
            state["name"] = f"{args.name}-name"
        if args.typ == "aws:iam/role:Role":
            state["arn"] = f"arn:aws:iam::{ACCOUNT}:role/{args.name}-name"
            state["uniqueId"] = role_unique_id(args.name)
        if args.typ == "tls:index/privateKey:PrivateKey":
            state["privateKeyPem"] = f"-----BEGIN PRIVATE KEY-----\n{args.name}\n-----END PRIVATE KEY-----\n"
        if args.typ in ("tls:index/selfSignedCert:SelfSignedCert", "tls:index/locallySignedCert:LocallySignedCert"):
            state["certPem"] = f"-----BEGIN CERTIFICATE-----\n{args.name}\n-----END CERTIFICATE-----\n"
        if args.typ == "tls:index/certRequest:CertRequest":
            state["certRequestPem"] = f"-----BEGIN CERTIFICATE REQUEST-----\n{args.name}\n"
        if args.typ == "aws:cloudwatch/logGroup:LogGroup":
            # As the provider reports it: no trailing ":*".
            state["arn"] = f"arn:aws:logs:eu-west-1:{ACCOUNT}:log-group:{args.inputs['name']}"
        if args.typ == "aws:s3/bucket:Bucket":
            # Autonamed: the resource name plus a random suffix, as Pulumi would (lowercase only).
            state["bucket"] = f"{args.name}-a1b2c3d"
            state["arn"] = f"arn:aws:s3:::{state['bucket']}"
            rid = state["bucket"]
        if args.typ == "aws:sns/topic:Topic":
            state["arn"] = f"arn:aws:sns:eu-west-1:{ACCOUNT}:{args.name}-e4f5a6b"
        if args.typ == "aws:kms/key:Key":
            state["arn"] = f"arn:aws:kms:eu-west-1:{ACCOUNT}:key/{args.name}"
        if args.typ == "command:local:Command" and not self.preview:
            # A command's output is known only once it has run (never in a preview).
            state["stdout"] = "HEALTHY"
        return rid, state

    def call(self, args: pulumi.runtime.MockCallArgs) -> tuple[dict, list | None]:
        self.program.calls.append((args.token, dict(args.args)))
        self.program.call_providers.append(args.provider)
        if args.token == "aws:ec2/getVpc:getVpc":
            if (args.args.get("default") and not self.default_vpc) or args.args.get("id", VPC_ID) != VPC_ID:
                return {}, [("", "no matching EC2 VPC found")]  # the provider's words; the SDK raises them
            return {
                "id": VPC_ID,
                "cidrBlock": VPC_CIDR,
                "cidrBlockAssociations": [{"cidrBlock": VPC_CIDR, "associationId": "a", "state": "associated"}],
            }, []
        if args.token == "aws:ec2/getInstanceType:getInstanceType":
            if args.args["instanceType"] not in INSTANCE_TYPES:
                # EC2's answer (DescribeInstanceTypes), as the provider passes it on.
                return {}, [("", f"reading EC2 Instance Type ({args.args['instanceType']}): operation error EC2: "
                                 "DescribeInstanceTypes, api error InvalidInstanceType: The following supplied "
                                 f"instance types do not exist: [{args.args['instanceType']}]")]
            spec = INSTANCE_TYPES[args.args["instanceType"]]
            return {
                "instanceType": args.args["instanceType"],
                "defaultVcpus": spec["defaultVcpus"],
                "memorySize": spec["memorySize"],
                "sustainedClockSpeed": spec["sustainedClockSpeed"],
                "burstablePerformanceSupported": spec["burstable"],
                "supportedArchitectures": spec.get("arch", ["x86_64"]),
            }, []
        if args.token == "aws:index/getAvailabilityZones:getAvailabilityZones":
            # AWS applies the filters; the mock does too, so a dropped filter shows.
            names = list(ZONES)
            for f in args.args.get("filters") or []:
                assert f["name"] == "opt-in-status", f
                names = [n for n in names if ZONES[n] in f["values"]]
            return {"names": names, "zoneIds": [f"euw1-az{i}" for i in range(len(names))]}, []
        if args.token == "aws:ssm/getParameter:getParameter":
            name = args.args["name"]
            if name not in AMI_PARAMETERS:
                raise AssertionError(f"ParameterNotFound: {name}")
            return {"name": name, "type": "String", "value": AMI_PARAMETERS[name], "arn": f"arn:{name}",
                    "id": name, "insecureValue": AMI_PARAMETERS[name], "version": 42}, []
        if args.token == "aws:ec2/getInstanceTypeOfferings:getInstanceTypeOfferings":
            # AWS applies the filters; the mock does too (a type not offered somewhere says where it is).
            assert args.args.get("locationType") == "availability-zone", args.args
            ((f,),) = [args.args["filters"]]
            assert f["name"] == "instance-type", f
            (wanted,) = f["values"]
            zones = INSTANCE_TYPES[wanted].get("zones", list(ZONES))
            return {"locations": zones, "locationTypes": ["availability-zone"] * len(zones),
                    "instanceTypes": [wanted] * len(zones), "id": "eu-west-1"}, []
        if args.token == "aws:ec2/getSubnets:getSubnets":
            # AWS applies the filters; so does the mock: the VPC's subnets, or its default (public) ones.
            found = dict(self.subnets)
            for f in args.args.get("filters") or []:
                if f["name"] == "vpc-id":
                    assert f["values"] == [VPC_ID], f
                elif f["name"] == "default-for-az":
                    found = {i: s for i, s in found.items() if s.get("default")}
                else:
                    raise AssertionError(f"unexpected subnet filter {f}")
            return {"ids": list(found)}, []
        if args.token == "aws:ec2/getSubnet:getSubnet":
            subnet = self.subnets[args.args["id"]]
            return {"id": args.args["id"], "cidrBlock": subnet["cidr"], "tags": subnet.get("tags", {}),
                    "vpcId": VPC_ID}, []
        if args.token == "aws:index/getCallerIdentity:getCallerIdentity":
            return {"accountId": ACCOUNT, "arn": f"arn:aws:sts::{ACCOUNT}:assumed-role/deployer/session",
                    "id": ACCOUNT, "userId": "AROAEXAMPLE:session"}, []
        if args.token == "aws:iam/getSessionContext:getSessionContext":
            # What the data source answers for an assumed-role session: the role's own ARN, path included.
            arn = args.args["arn"]
            role = arn.split(":assumed-role/")[1].split("/")[0] if ":assumed-role/" in arn else None
            issuer = f"arn:aws:iam::{ACCOUNT}:role/{DEPLOYER_ROLE_PATH}{role}" if role else arn
            return {"arn": arn, "issuerArn": issuer, "issuerId": "AROAEXAMPLE", "issuerName": role or "",
                    "sessionName": "session" if role else "", "id": arn}, []
        if args.token == "aws:index/getRegion:getRegion":
            return {"region": "eu-west-1", "name": "eu-west-1", "id": "eu-west-1"}, []
        raise AssertionError(f"unexpected data source call {args.token}")


def user_data(inputs: dict[str, Any]) -> str:
    """The cloud-config an instance boots with: its user_data_base64, gunzipped."""
    assert "userData" not in inputs, "user data goes compressed, in userDataBase64"
    return gzip.decompress(base64.b64decode(inputs["userDataBase64"])).decode()


def stack_config(stack: str, directory: Path = ROOT) -> dict[str, Any]:
    """The stack file's config as written (full keys, YAML values), read by outsystems_redis.tools.stack_file."""
    return dict(stack_file.load(directory / f"Pulumi.{stack}.yaml").get("config") or {})


def config_for_pulumi(config: dict[str, Any]) -> dict[str, str]:
    """`config` (full keys) as Pulumi hands it to a program, by outsystems_redis.tools.stack_file's one rule; None
    drops a key. A `secure:` value cannot be decrypted here: the test must pass the plain value in
    `overrides` (with its key in `secret_keys`)."""
    raw, encrypted = stack_file.config_strings({"config": {k: v for k, v in config.items() if v is not None}},
                                               namespace=None)
    assert not encrypted, f"{', '.join(encrypted)}: a secure: value needs the plain value in overrides"
    return raw


def project_name(directory: Path = ROOT) -> str:
    return str(yaml.safe_load((directory / "Pulumi.yaml").read_text())["name"])


def run_program(
    stack: str,
    overrides: dict[str, Any] | None = None,
    secret_keys: tuple[str, ...] = (),
    into: list[Recorded] | None = None,
    preview: bool = False,
    directory: Path = ROOT,
    default_vpc: bool = True,
    subnets: dict[str, dict] | None = None,
) -> Program:
    """`overrides` maps full keys (outsystems-redis:servers) to values; None removes a key.

    `into` receives the recorded resources as they register, so a caller can
    see what was registered even when the program raises. `directory` holds the
    program (its Pulumi.yaml, Pulumi.<stack>.yaml and __main__.py): this project, or an example.
    """
    config = {**stack_config(stack, directory), **(overrides or {})}
    pulumi.runtime.set_all_config(config_for_pulumi(config), list(secret_keys))

    program = Program(resources=into if into is not None else [], exports={}, secret_exports=set())
    mocks = AwsMocks(program, preview, default_vpc, subnets)
    pulumi.runtime.set_mocks(
        mocks, project=project_name(directory), stack=stack, preview=preview, monitor=RecordingMonitor(mocks)
    )
    exported: dict[str, Any] = {}

    def capture(name: str, value: Any) -> None:
        exported[name] = value

    original_export = pulumi.export

    # Compiled here, before the run starts its threads: CPython 3.11's compiler keeps one recursion
    # counter per process (gh-106905), and a compile racing the previous run's threads can fail.
    main = directory / "__main__.py"
    code = compile(main.read_text(), str(main), "exec")

    @pulumi.runtime.test
    def run() -> pulumi.Output:
        pulumi.export = capture
        try:
            exec(code, {"__name__": "__main__", "__file__": str(main)})
        finally:
            pulumi.export = original_export
        names = sorted(exported)
        outputs = [pulumi.Output.from_input(exported[n]) for n in names]

        async def secrets() -> None:
            for n, o in zip(names, outputs, strict=True):
                if await o.is_secret():
                    program.secret_exports.add(n)
                if not await o.is_known():
                    program.unknown_exports.add(n)

        def keep(name: str, value: Any) -> None:
            program.exports[name] = value

        # One by one: in a preview, an export that is not known yet must not hide the others.
        kept = [o.apply(lambda v, n=n: keep(n, v)) for n, o in zip(names, outputs, strict=True)]
        return pulumi.Output.all(*kept, pulumi.Output.from_input(secrets()))

    run()
    return program


# --- a program of a test's own (a component's caller) ---------------------------------------------


def run_code(tmp_path: Path, code: str, recorded: list[Recorded]) -> Program:
    """`code` as the __main__.py of a program of the test's own (project team-program, stack test)."""
    (tmp_path / "Pulumi.yaml").write_text("name: team-program\nruntime: python\n")
    (tmp_path / "Pulumi.test.yaml").write_text("config:\n  aws:region: eu-west-1\n")
    (tmp_path / "__main__.py").write_text(
        "import pulumi\nimport pulumi_aws as aws\n"
        "from outsystems_redis.pulumi.session_store import RedisSessionStore, SessionStoreArgs\n" + code
    )
    return run_program("test", directory=tmp_path, into=recorded)


def run_store(tmp_path: Path, arguments: str, recorded: list[Recorded], opts: str = "None") -> Program:
    return run_code(tmp_path, f'store = RedisSessionStore("sessions", SessionStoreArgs({arguments}), opts={opts})\n'
                              'pulumi.export("ips", store.private_ips)\n', recorded)
