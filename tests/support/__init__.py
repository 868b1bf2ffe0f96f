"""Reusable end-to-end harness: private network namespace, ippeveprinter, ipptool, SNI recorder.

Modules:

* :mod:`tests.support.netns` - ``NetNamespace`` (root: ``unshare -n -m`` + ``nsenter``).
* :mod:`tests.support.ippeveprinter` - ``IppEvePrinter`` (plain-HTTP IPP upstream).
* :mod:`tests.support.ipptool` - ``IppTool``, ``make_pdf`` and parsed ``IppToolRun`` results.
* :mod:`tests.support.sni` / ``sni_server.py`` - ``SniRecorder``, a TLS server recording SNI.
* :mod:`tests.support.certs` - ``write_self_signed`` (certificates made at test time).
* :mod:`tests.support.fixtures` - pytest fixtures built on the above.

Debian packages needed are listed in ``.ci/apt-packages.txt``; a missing binary fails with
the package name (these tests never skip).
"""
