"""The admission policy that keeps ``payloadFrom`` to the requester's own rights.

The operator reads the ConfigMap or Secret key a Task's ``spec.payloadFrom``
names and hands it to a handler, whose result may land in ``status.result``.
The operator may read every such object in the namespaces it serves, so
without a check anyone allowed to create Tasks could have it read a Secret
they cannot read themselves (a confused deputy). This
``ValidatingAdmissionPolicy`` asks the API server's authorizer, for the user
making the request, whether *they* may ``get`` the object named; if not, the
Task (or the CronTask whose ``taskTemplate`` names it) is refused at apply
time with a message naming the reference.

When the check runs:

- on CREATE of a Task or CronTask with a ``payloadFrom``;
- on UPDATE when the referenced name changes, or when the handler ``type``
  changes while a reference is set: both decide where the object's data
  goes. Other updates (``cancel``, labels, the retry annotation) are not
  checked, so a user who may not read the Secret can still cancel the Task.

Rights are checked at admission, not again when the operator reads the key:
revoking a user's access later does not stop a Task created before.

The documents are rendered here, from the model's own field names, and used
twice: ``hack/update-chart.py`` writes them into the chart (behind
``admission.payloadFrom``; ``tests/helm/test_generated.py`` fails on drift)
and ``taskmill dev`` applies them (:func:`taskmill.testing.stack.install_admission`).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from taskmill.crdgen.render import LABELS
from taskmill.models import base
from taskmill.models.crontask import CronTaskSpec, TaskTemplate
from taskmill.models.task import PayloadFrom, TaskSpec

#: The policy's and its binding's name where no chart names them.
POLICY_NAME = "taskmill-payloadfrom"
API_VERSION = "admissionregistration.k8s.io/v1"


def _alias(model: type[BaseModel], field: str) -> str:
    """The API (camelCase) name of a model field, so the rules follow renames."""
    alias = model.model_fields[field].alias
    return alias or field


PAYLOAD_FROM = _alias(TaskSpec, "payload_from")
TYPE = _alias(TaskSpec, "type")
TEMPLATE = f"{_alias(CronTaskSpec, 'task_template')}.{_alias(TaskTemplate, 'spec')}"
SECRET_REF = _alias(PayloadFrom, "secret_key_ref")
CONFIG_MAP_REF = _alias(PayloadFrom, "config_map_key_ref")


def _spec_path(obj: str) -> str:
    """The Task spec inside ``obj``: a Task's own, or a CronTask's template."""
    return f"({obj}.kind == 'Task' ? {obj}.spec : {obj}.spec.{TEMPLATE})"


def _variables() -> list[dict[str, str]]:
    spec, old_spec = _spec_path("object"), _spec_path("oldObject")
    return [
        # Plain maps, not optionals: a field selected with `.?` on an optional
        # variable comes back empty (Kubernetes 1.37), on a map it does not.
        {"name": "source", "expression": f"{spec}.?{PAYLOAD_FROM}.orValue({{}})"},
        {
            # On CREATE there is no old object: nothing was allowed before.
            "name": "oldSource",
            "expression": f"oldObject == null ? {{}} : {old_spec}.?{PAYLOAD_FROM}.orValue({{}})",
        },
        {
            "name": "typeChanged",
            "expression": f"oldObject != null && {spec}.{TYPE} != {old_spec}.{TYPE}",
        },
        {
            "name": "field",
            "expression": (
                f"object.kind == 'Task' ? 'spec.{PAYLOAD_FROM}' : 'spec.{TEMPLATE}.{PAYLOAD_FROM}'"
            ),
        },
        {"name": "secret", "expression": f"variables.source.?{SECRET_REF}.?name.orValue('')"},
        {
            "name": "oldSecret",
            "expression": f"variables.oldSource.?{SECRET_REF}.?name.orValue('')",
        },
        {
            "name": "configMap",
            "expression": f"variables.source.?{CONFIG_MAP_REF}.?name.orValue('')",
        },
        {
            "name": "oldConfigMap",
            "expression": f"variables.oldSource.?{CONFIG_MAP_REF}.?name.orValue('')",
        },
    ]


def _validation(kind: str, plural: str, variable: str, old: str, ref: str) -> dict[str, str]:
    """Allowed: no such reference, one already admitted (same name, same
    handler type), or a requester who may ``get`` the object."""
    allowed = (
        f"authorizer.group('').resource('{plural}').namespace(request.namespace)"
        f".name(variables.{variable}).check('get').allowed()"
    )
    unchanged = f"(variables.{variable} == variables.{old} && !variables.typeChanged)"
    return {
        "expression": f"variables.{variable} == '' || {unchanged} || {allowed}",
        "messageExpression": (
            f"variables.field + '.{ref} names the {kind} \"' + variables.{variable} + "
            f"'\", which ' + request.userInfo.username + ' may not get in namespace ' + "
            f"request.namespace + '; the operator reads it only for a user who may'"
        ),
        "reason": "Forbidden",
    }


def render_policy(name: str = POLICY_NAME) -> list[dict[str, Any]]:
    """The ``ValidatingAdmissionPolicy`` and its binding (cluster-wide, Deny)."""
    metadata = {"name": name, "labels": dict(LABELS)}
    uses_payload_from = (
        f"object.kind == 'Task' ? has(object.spec.{PAYLOAD_FROM}) "
        f": has(object.spec.{TEMPLATE}.{PAYLOAD_FROM})"
    )
    policy = {
        "apiVersion": API_VERSION,
        "kind": "ValidatingAdmissionPolicy",
        "metadata": metadata,
        "spec": {
            "failurePolicy": "Fail",
            "matchConstraints": {
                "resourceRules": [
                    {
                        "apiGroups": [base.GROUP],
                        "apiVersions": ["*"],
                        "operations": ["CREATE", "UPDATE"],
                        # Not tasks/status: the operator's status writes are not
                        # evaluated at all.
                        "resources": ["tasks", "crontasks"],
                    }
                ]
            },
            # Objects without a payloadFrom (nearly all) skip the rules.
            "matchConditions": [{"name": "uses-payload-from", "expression": uses_payload_from}],
            "variables": _variables(),
            "validations": [
                _validation("Secret", "secrets", "secret", "oldSecret", SECRET_REF),
                _validation("ConfigMap", "configmaps", "configMap", "oldConfigMap", CONFIG_MAP_REF),
            ],
        },
    }
    binding = {
        "apiVersion": API_VERSION,
        "kind": "ValidatingAdmissionPolicyBinding",
        "metadata": dict(metadata, labels=dict(LABELS)),
        "spec": {"policyName": name, "validationActions": ["Deny"]},
    }
    return [policy, binding]
