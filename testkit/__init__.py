"""Flattr test kit: a real browser with an extension, the native host, the fake flattr.com.

The pytest plugin (:mod:`flattr_testing.plugin`, registered as ``flattr_testing``)
gives fixtures; the modules below are what they hand out, importable on their own:

- :mod:`flattr_testing.fake_site`: :class:`FakeSite`, the fake site's process and
  its admin client;
- :mod:`flattr_testing.host`: :class:`Host` and :class:`HostProcess`;
- :mod:`flattr_testing.extension`: :class:`Extension`, an extension folder and its ids;
- :mod:`flattr_testing.pages` and :mod:`flattr_testing.browsers`: tabs and browser
  drivers (Chromium through Playwright, Firefox through WebDriver BiDi);
- :mod:`flattr_testing.firefox`, :mod:`flattr_testing.bidi`,
  :mod:`flattr_testing.connect_proxy`: the Firefox machinery underneath.

Importing this package imports nothing else; docs/testing.md is the guide.
"""
