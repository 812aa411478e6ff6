"""
Setuptools shim; the metadata lives in setup.cfg.

The twistd plugin files in C{twisted/plugins/} are deliberately not a regular
package (neither C{twisted/} nor C{twisted/plugins/} has an C{__init__.py}),
so they are listed here as the namespace portion C{twisted.plugins}.  That
installs them beside Twisted's own plugins for C{pip install .}.  For
C{pip install -e .}, C{package_dir={"": "."}} makes setuptools put the
project directory itself on C{sys.path} (a static .pth file) instead of an
import-hook finder, and Twisted's plugin loader finds C{twisted/plugins}
there.  Either way C{twistd --help} lists the p2pnet plugins.
"""

from setuptools import find_packages, setup

setup(
    package_dir={"": "."},
    packages=find_packages(include=["p2pnet", "p2pnet.*"]) + ["twisted.plugins"],
    package_data={"twisted.plugins": ["p2pnet_*.py"]},
)
