"""
Setuptools shim; the metadata lives in setup.cfg.

The twistd plugin files in C{twisted/plugins/} are deliberately not a regular
package (neither C{twisted/} nor C{twisted/plugins/} has an C{__init__.py}),
so they are listed here as the namespace portion C{twisted.plugins}.  That
installs them beside Twisted's own plugins for C{pip install .}, and keeps
them reachable through the project directory for C{pip install -e .}, so
C{twistd --help} lists the p2pnet plugins either way.
"""

from setuptools import find_packages, setup

setup(
    packages=find_packages(include=["p2pnet", "p2pnet.*"]) + ["twisted.plugins"],
    package_data={"twisted.plugins": ["p2pnet_*.py"]},
)
