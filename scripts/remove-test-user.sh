#!/bin/sh
# Removes the throwaway user the end-to-end tests create when run as root
# (ally-e2e-user, see tests/src/users.rs), if it exists.
user=ally-e2e-user
[ "$(id -u)" = 0 ] || exit 0
getent passwd "$user" >/dev/null 2>&1 || exit 0
userdel "$user" 2>/dev/null || echo "remove-test-user: cannot remove $user" >&2
exit 0
