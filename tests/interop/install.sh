#!/bin/sh
# install.sh: install Postfix and Dovecot for the interoperability tier
# without letting Debian start them as system daemons.
#
# The tier runs its own Postfix and Dovecot from a private directory on
# high loopback ports (see stack.py).  The packages' maintainer scripts
# would otherwise start the system instances on ports 25, 143, 993...
# and Postfix's debconf dialogue would stop a non-interactive install, so:
#  - a /usr/sbin/policy-rc.d that exits 101 ("action forbidden") is in
#    place while apt-get runs; a policy file that was already there (as in
#    Docker images) is put back byte for byte afterwards;
#  - Postfix is preseeded to "No configuration": no /etc/postfix/main.cf,
#    nothing listening.
#
# Also adds the system user bearmail-interop that owns the test Maildir.
# Idempotent: with everything in place it does nothing.  Called by
# build.sh; run it by hand as root (or through sudo) otherwise.
set -eu

PKGS="postfix dovecot-core dovecot-imapd dovecot-pop3d openssl"

missing=
for p in $PKGS; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' ||
		missing="$missing $p"
done
# The owner of the test Maildir: Postfix's virtual delivery and Dovecot
# both refuse root, and a user of its own keeps the tests off real mail.
TEST_USER=bearmail-interop
need_user=
getent passwd "$TEST_USER" >/dev/null 2>&1 || need_user=yes
if [ -z "$missing" ] && [ -z "$need_user" ]; then
	exit 0
fi

if [ "$(id -u)" -eq 0 ]; then
	SUDO=
elif command -v sudo >/dev/null 2>&1; then
	SUDO=sudo
else
	echo "install.sh: need root (or sudo) to install$missing" >&2
	exit 1
fi

if [ -n "$missing" ]; then
	policy=/usr/sbin/policy-rc.d
	saved=
	if [ -e "$policy" ]; then
		saved=$(mktemp /tmp/policy-rc.d.XXXXXX)
		$SUDO cp -p "$policy" "$saved"
	fi
	restore()
	{
		if [ -n "$saved" ]; then
			$SUDO cp -p "$saved" "$policy"
			$SUDO rm -f "$saved"
		else
			$SUDO rm -f "$policy"
		fi
	}
	trap restore EXIT
	trap 'exit 1' HUP INT TERM
	printf '#!/bin/sh\n# bearmail tests/interop/install.sh: no daemon starts\nexit 101\n' |
		$SUDO tee "$policy" >/dev/null
	$SUDO chmod 755 "$policy"

	echo "postfix postfix/main_mailer_type select No configuration" |
		$SUDO debconf-set-selections

	echo "install.sh: installing$missing (no daemon will be started)"
	$SUDO apt-get update -qq
	# shellcheck disable=SC2086 # one word per package
	$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
		--no-install-recommends $missing
fi
if [ -n "$need_user" ]; then
	echo "install.sh: adding system user $TEST_USER"
	$SUDO useradd --system --user-group --no-create-home \
		--home-dir /nonexistent --shell /usr/sbin/nologin "$TEST_USER"
fi
