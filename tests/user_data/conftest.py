"""The boot-script fixtures (the fake IMDS and a prepared node), defined with their helpers in bootlab.py."""

from tests.user_data.bootlab import imds, node  # noqa: F401 - fixtures, found by pytest under these names
