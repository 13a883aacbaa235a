"""coretraffic's tests: see tests/README.md for the folders and where the helpers live."""

import pytest

# The helpers in tests/support assert too: pytest rewrites them as it rewrites test and conftest modules, so that
# their failures explain themselves. (Here, because this runs before anything imports tests.support.)
pytest.register_assert_rewrite("tests.support")
