#!/bin/sh
# Removes the throwaway user and group the end-to-end tests create when run
# as root (ally-e2e-user, see tests/src/users.rs; ally-e2e-ops, see
# tests/tests/e2e/control_limits.rs), if they exist.
[ "$(id -u)" = 0 ] || exit 0
if getent passwd ally-e2e-user >/dev/null 2>&1; then
    userdel ally-e2e-user 2>/dev/null || echo "remove-test-user: cannot remove user ally-e2e-user" >&2
fi
if getent group ally-e2e-ops >/dev/null 2>&1; then
    groupdel ally-e2e-ops 2>/dev/null || echo "remove-test-user: cannot remove group ally-e2e-ops" >&2
fi
exit 0
