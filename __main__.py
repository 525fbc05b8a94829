"""outsystems-redis: the OutSystems Redis session store on AWS.

Reads the stack's config, builds one session store from it, and exports what an
administrator needs next. The store checks everything, and looks up what it
needs from AWS, before it registers any resource.
"""

import pulumi

from outsystems_redis.pulumi.session_store import RedisSessionStore, SessionStoreArgs
from outsystems_redis.settings import NAMESPACE


def project_config() -> dict[str, str]:
    """Every key set in this project's namespace, so a misspelled one is caught, not ignored."""
    merged = {**pulumi.runtime.get_config_env(), **pulumi.runtime.config.CONFIG.get()}
    prefix = NAMESPACE + ":"
    return {k[len(prefix) :]: v for k, v in merged.items() if k.startswith(prefix)}


# The post-deploy check runs with the project's own virtualenv (Pulumi.yaml: virtualenv .venv).
store = RedisSessionStore(
    "outsystems-redis",
    SessionStoreArgs.from_config(project_config(), pulumi.get_stack(), health_check_python=".venv/bin/python"),
)

pulumi.export("serverPrivateIps", store.private_ips)
# In server order, like serverPrivateIps: the targets of `aws ssm start-session`.
pulumi.export("serverInstanceIds", store.instance_ids)
# Each server's own metric namespace, in server order: OutSystems/Redis/<stack>/<role id>:<instance id>.
pulumi.export("serverMetricNamespaces", store.metric_namespaces)
# The Redis line the servers run (major.minor), as the platform chose it.
pulumi.export("redisVersion", store.redis_version)
pulumi.export("subnetIds", store.network.subnet_ids)
pulumi.export("securityGroupId", store.network.security_group_id)
pulumi.export("passwordParameter", store.password_parameter)
pulumi.export("connectionString", store.connection_string)
pulumi.export("hsconfSnippet", store.hsconf)
# Where to look when something pages: the topic alarms go to, the stack's logs, its dashboard and backups.
pulumi.export("alarmTopicArn", store.alarm_topic_arn)
pulumi.export("logGroup", store.log_group_name)
pulumi.export("dashboardName", store.dashboard_name)
pulumi.export("backupBucket", store.backup_bucket)
if store.ca_certificate is not None:
    # Not a secret: front-ends trust this CA to verify the servers' TLS certificates.
    pulumi.export("caCertificate", store.ca_certificate)
if store.health_report is not None:
    pulumi.export("healthReport", store.health_report)
