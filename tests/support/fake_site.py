"""The fake site's client lives in the installed package: flattr_testing.fake_site."""

from flattr_testing.fake_site import *  # noqa: F403
from flattr_testing.fake_site import FakeSite, FakeSiteError

__all__ = ["FakeSite", "FakeSiteError"]
