"""gunicorn settings of the example: gunicorn.toml passes this file with
--config. Only needed with gunicorn before 21 (Debian 12 has 20.1).

gunicorn 20.1 has each worker call setuid() to the user it already runs as.
corral's sandbox filters setuid(2) (SystemCallFilter=~@privileged, which
answers EPERM), so the worker fails to boot ("PermissionError: [Errno 1]
Operation not permitted" from os.setuid) and the instance exits with
status 3. gunicorn 21 skips the call when the user is already the right one
(https://github.com/benoitc/gunicorn/pull/2758); this does the same for 20.1.
The master loads this file before it forks its worker.
"""

import os

from gunicorn import util

_set_owner_process = util.set_owner_process


def _set_owner_process_if_needed(uid, gid, initgroups=False):
    if (uid, gid) == (os.geteuid(), os.getegid()):
        return  # already that user and group: no setuid(2), no setgid(2)
    _set_owner_process(uid, gid, initgroups)


util.set_owner_process = _set_owner_process_if_needed
