"""The managed-cloud deployment of Frontdesk as an AWS CDK (Python) app, one stack per stage.

| module | holds |
|---|---|
| ``config`` | :class:`~infra.config.StageConfig` and the ``dev`` / ``prod`` stages |
| ``data`` | :class:`~infra.data.Data`: the single DynamoDB table, built from ``chalicelib.store.schema`` |
| ``api`` | :class:`~infra.api.Api`: the Lambda role (written here, never by Chalice) and the Chalice app |
| ``monitoring`` | :class:`~infra.monitoring.Monitoring`: alarm topic and alarms |
| ``stacks`` | :class:`~infra.stacks.FrontdeskStack`: KMS key + data + application for one stage |
| ``app`` | the CDK app entry (``python -m infra.app``; ``cdk.json`` at the repository root) |

Development-time only: nothing here is packaged into Lambda (Chalice ships ``app.py`` and
``chalicelib/`` alone), so ``chalice.cdk`` may be imported here and nowhere under ``chalicelib``.
"""

import os

# jsii prints a boxed end-of-life banner on every synth under Node 20, which is what this machine
# and CI have; it says nothing about the templates. The variable lists major versions to silence.
os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")
