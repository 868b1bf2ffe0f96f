"""Make the harness fixtures available to the harness's own tests."""

from tests.support.fixtures import (  # noqa: F401 - fixtures are used by name
    ippeveprinter,
    ipptool,
    netns,
    sni_recorder,
    tenant_cert,
)
