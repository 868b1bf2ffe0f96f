from tests.support.fixtures import ippeveprinter, ipptool, netns  # noqa: F401
