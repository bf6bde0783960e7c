"""The parts of the operators' CRD schemas that wxkf's manifests use.

kubernetes-validate carries only the built-in kinds; these subsets check the custom resources
(RabbitMQ Cluster Operator, KEDA, Prometheus Operator, OT-CONTAINER-KIT redis-operator) for the
fields we set, their types and the values that change behaviour, with unknown fields refused
so that a typo cannot pass.
"""

from __future__ import annotations

from typing import Any

_META = {
    "type": "object",
    "required": ["name"],
    "properties": {"name": {"type": "string"}, "labels": {"type": "object"}},
}

_RESOURCES = {
    "type": "object",
    "additionalProperties": False,
    "properties": {"requests": {"type": "object"}, "limits": {"type": "object"}},
}


def _kind(api_version: str, kind: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "additionalProperties": False,
        "properties": {
            "apiVersion": {"const": api_version},
            "kind": {"const": kind},
            "metadata": _META,
            "spec": spec,
        },
    }


RABBITMQ_CLUSTER = _kind(
    "rabbitmq.com/v1beta1",
    "RabbitmqCluster",
    {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "replicas": {"type": "integer", "enum": [1, 3, 5, 7]},
            "resources": _RESOURCES,
            "persistence": {
                "type": "object",
                "additionalProperties": False,
                "properties": {
                    "storage": {"type": "string"},
                    "storageClassName": {"type": "string"},
                },
            },
            "rabbitmq": {
                "type": "object",
                "additionalProperties": False,
                "properties": {
                    "additionalPlugins": {"type": "array", "items": {"type": "string"}},
                    "additionalConfig": {"type": "string"},
                },
            },
            "override": {"type": "object"},
        },
    },
)

_TRIGGER = {
    "type": "object",
    "required": ["type", "metadata"],
    "additionalProperties": False,
    "properties": {
        "type": {"const": "rabbitmq"},
        "authenticationRef": {
            "type": "object",
            "required": ["name"],
            "properties": {"name": {"type": "string"}},
        },
        "metadata": {
            "type": "object",
            "required": ["protocol", "mode", "queueName", "value"],
            "additionalProperties": False,
            "properties": {
                # http = the management API, which counts unacknowledged messages too.
                "protocol": {"const": "http"},
                "mode": {"enum": ["QueueLength", "MessageRate"]},
                "queueName": {"type": "string"},
                "vhostName": {"type": "string"},
                "value": {"type": "string", "pattern": "^[0-9]+(\\.[0-9]+)?$"},
            },
        },
    },
}

SCALED_OBJECT = _kind(
    "keda.sh/v1alpha1",
    "ScaledObject",
    {
        "type": "object",
        "required": ["scaleTargetRef", "triggers"],
        "additionalProperties": False,
        "properties": {
            "scaleTargetRef": {
                "type": "object",
                "required": ["name"],
                "properties": {"name": {"type": "string"}},
            },
            "minReplicaCount": {"type": "integer", "minimum": 0},
            "maxReplicaCount": {"type": "integer", "minimum": 1},
            "pollingInterval": {"type": "integer", "minimum": 1},
            "cooldownPeriod": {"type": "integer", "minimum": 0},
            "triggers": {"type": "array", "minItems": 1, "items": _TRIGGER},
        },
    },
)

TRIGGER_AUTHENTICATION = _kind(
    "keda.sh/v1alpha1",
    "TriggerAuthentication",
    {
        "type": "object",
        "required": ["secretTargetRef"],
        "additionalProperties": False,
        "properties": {
            "secretTargetRef": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["parameter", "name", "key"],
                    "additionalProperties": False,
                    "properties": {
                        "parameter": {"type": "string"},
                        "name": {"type": "string"},
                        "key": {"type": "string"},
                    },
                },
            }
        },
    },
)

_ENDPOINT = {
    "type": "object",
    "required": ["port"],
    "properties": {
        "port": {"type": "string"},
        "path": {"type": "string"},
        "interval": {"type": "string", "pattern": "^[0-9]+[smh]$"},
    },
}

POD_MONITOR = _kind(
    "monitoring.coreos.com/v1",
    "PodMonitor",
    {
        "type": "object",
        "required": ["selector", "podMetricsEndpoints"],
        "additionalProperties": False,
        "properties": {
            # The pod label whose value becomes the job label (the dashboard selects on it).
            "jobLabel": {"type": "string"},
            "selector": {"type": "object"},
            "namespaceSelector": {"type": "object"},
            "podMetricsEndpoints": {"type": "array", "minItems": 1, "items": _ENDPOINT},
        },
    },
)

PROMETHEUS_RULE = _kind(
    "monitoring.coreos.com/v1",
    "PrometheusRule",
    {
        "type": "object",
        "required": ["groups"],
        "additionalProperties": False,
        "properties": {
            "groups": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["name", "rules"],
                    "properties": {
                        "name": {"type": "string"},
                        "rules": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "required": ["alert", "expr"],
                                "properties": {
                                    "alert": {"type": "string"},
                                    "expr": {"type": "string"},
                                    "for": {"type": "string"},
                                    "labels": {"type": "object"},
                                    "annotations": {"type": "object"},
                                },
                            },
                        },
                    },
                },
            }
        },
    },
)

_SECRET_KEY = {
    "type": "object",
    "required": ["name", "key"],
    "additionalProperties": False,
    "properties": {"name": {"type": "string"}, "key": {"type": "string"}},
}

_REDIS_KUBERNETES_CONFIG = {
    "type": "object",
    "required": ["image"],
    "additionalProperties": False,
    "properties": {
        "image": {"type": "string"},
        "imagePullPolicy": {"enum": ["Always", "IfNotPresent", "Never"]},
        "redisSecret": _SECRET_KEY,
        "resources": _RESOURCES,
    },
}

_REDIS_POD = {
    # Fields that RedisReplication and RedisSentinel share (OT-CONTAINER-KIT redis-operator).
    "clusterSize": {"type": "integer", "minimum": 1},
    "kubernetesConfig": _REDIS_KUBERNETES_CONFIG,
    "podSecurityContext": {"type": "object"},
    "securityContext": {"type": "object"},
    "topologySpreadConstraints": {"type": "array", "items": {"type": "object"}},
}

_DIGITS = {"type": "string", "pattern": "^[0-9]+$"}

REDIS_REPLICATION = _kind(
    "redis.redis.opstreelabs.in/v1beta2",
    "RedisReplication",
    {
        "type": "object",
        "required": ["clusterSize", "kubernetesConfig"],
        "additionalProperties": False,
        "properties": {
            **_REDIS_POD,
            "redisConfig": {
                "type": "object",
                "additionalProperties": False,
                # The name of a ConfigMap with the key redis-additional.conf.
                "properties": {"additionalRedisConfig": {"type": "string"}},
            },
            "storage": {
                "type": "object",
                "additionalProperties": False,
                "properties": {"volumeClaimTemplate": {"type": "object"}},
            },
            # A Secret volume with the key user.acl, mounted at /etc/redis/user.acl.
            "acl": {
                "type": "object",
                "additionalProperties": False,
                "properties": {
                    "secret": {
                        "type": "object",
                        "required": ["secretName"],
                        "additionalProperties": False,
                        "properties": {"secretName": {"type": "string"}},
                    }
                },
            },
        },
    },
)

REDIS_SENTINEL = _kind(
    "redis.redis.opstreelabs.in/v1beta2",
    "RedisSentinel",
    {
        "type": "object",
        "required": ["clusterSize", "kubernetesConfig", "redisSentinelConfig"],
        "additionalProperties": False,
        "properties": {
            **_REDIS_POD,
            "redisSentinelConfig": {
                "type": "object",
                "required": ["redisReplicationName"],
                "additionalProperties": False,
                "properties": {
                    "redisReplicationName": {"type": "string"},
                    "masterGroupName": {"type": "string"},
                    # The operator takes these numbers as strings.
                    "quorum": _DIGITS,
                    "downAfterMilliseconds": _DIGITS,
                    "failoverTimeout": _DIGITS,
                    "parallelSyncs": _DIGITS,
                    "redisReplicationPassword": {
                        "type": "object",
                        "required": ["secretKeyRef"],
                        "additionalProperties": False,
                        "properties": {"secretKeyRef": _SECRET_KEY},
                    },
                },
            },
        },
    },
)

_CLUSTER_REFERENCE = {
    "type": "object",
    "required": ["name"],
    "additionalProperties": False,
    "properties": {"name": {"type": "string"}, "namespace": {"type": "string"}},
}

# The Messaging Topology Operator's (rabbitmq.com/v1beta1): a broker user, its permissions and
# its topic permissions.
RABBITMQ_USER = _kind(
    "rabbitmq.com/v1beta1",
    "User",
    {
        "type": "object",
        "required": ["rabbitmqClusterReference"],
        "additionalProperties": False,
        "properties": {
            "tags": {
                "type": "array",
                "items": {
                    "enum": [
                        "management",
                        "policymaker",
                        "monitoring",
                        "administrator",
                        "impersonator",
                    ]
                },
            },
            "importCredentialsSecret": {
                "type": "object",
                "additionalProperties": False,
                "properties": {"name": {"type": "string"}},
            },
            "rabbitmqClusterReference": _CLUSTER_REFERENCE,
        },
    },
)
RABBITMQ_PERMISSION = _kind(
    "rabbitmq.com/v1beta1",
    "Permission",
    {
        "type": "object",
        "required": ["vhost", "permissions", "rabbitmqClusterReference"],
        "additionalProperties": False,
        "properties": {
            "vhost": {"type": "string"},
            "user": {"type": "string"},
            "userReference": {
                "type": "object",
                "additionalProperties": False,
                "properties": {"name": {"type": "string"}},
            },
            "permissions": {
                "type": "object",
                "additionalProperties": False,
                "properties": {
                    "configure": {"type": "string"},
                    "write": {"type": "string"},
                    "read": {"type": "string"},
                },
            },
            "rabbitmqClusterReference": _CLUSTER_REFERENCE,
        },
    },
)

RABBITMQ_TOPIC_PERMISSION = _kind(
    "rabbitmq.com/v1beta1",
    "TopicPermission",
    {
        "type": "object",
        "required": ["vhost", "permissions", "rabbitmqClusterReference"],
        "additionalProperties": False,
        "properties": {
            "vhost": {"type": "string"},
            "user": {"type": "string"},
            "userReference": {
                "type": "object",
                "additionalProperties": False,
                "properties": {"name": {"type": "string"}},
            },
            "permissions": {
                "type": "object",
                "additionalProperties": False,
                "properties": {
                    "exchange": {"type": "string"},
                    "write": {"type": "string"},
                    "read": {"type": "string"},
                },
            },
            "rabbitmqClusterReference": _CLUSTER_REFERENCE,
        },
    },
)

BY_KIND: dict[tuple[str, str], dict[str, Any]] = {
    ("rabbitmq.com/v1beta1", "TopicPermission"): RABBITMQ_TOPIC_PERMISSION,
    ("rabbitmq.com/v1beta1", "User"): RABBITMQ_USER,
    ("rabbitmq.com/v1beta1", "Permission"): RABBITMQ_PERMISSION,
    ("redis.redis.opstreelabs.in/v1beta2", "RedisReplication"): REDIS_REPLICATION,
    ("redis.redis.opstreelabs.in/v1beta2", "RedisSentinel"): REDIS_SENTINEL,
    ("rabbitmq.com/v1beta1", "RabbitmqCluster"): RABBITMQ_CLUSTER,
    ("keda.sh/v1alpha1", "ScaledObject"): SCALED_OBJECT,
    ("keda.sh/v1alpha1", "TriggerAuthentication"): TRIGGER_AUTHENTICATION,
    ("monitoring.coreos.com/v1", "PodMonitor"): POD_MONITOR,
    ("monitoring.coreos.com/v1", "PrometheusRule"): PROMETHEUS_RULE,
}
