#!/bin/sh
# install-system.sh: the privileged half of a system install of bearmail
# (bearmail(8), SYSTEM INSTALLATION).  Run as root after `make install`;
# `make install-system` runs it with the configured paths.
#
#   - the user `bearmail` (owns the queue and the tokens) and the group
#     `bearmail-drop` (may create files in the maildrop, nothing else);
#   - /var/spool/bearmail 0711, tmp q failed 0700, maildrop 1730
#     bearmail:bearmail-drop; /var/lib/bearmail 0700;
#   - bearmail-drop set-group-ID bearmail-drop (2755 root:bearmail-drop);
#   - sendmail, send-mail, mailq and newaliases links to bearmail (an
#     existing file is kept unless FORCE=1);
#   - the systemd units (enabled), or the cron file without systemd.
#
# Environment (make install-system sets them): BINDIR, SBINDIR,
# LOCALSTATEDIR, SYSCONFDIR, DESTDIR (a staging root: then nothing is
# chowned, enabled or created outside it), FORCE.  Argument: the
# directory holding the contrib files.  Running it twice is harmless.
set -eu

CONTRIB=${1:-$(dirname "$0")}
BINDIR=${BINDIR:-/usr/local/bin}
SBINDIR=${SBINDIR:-/usr/local/sbin}
LOCALSTATEDIR=${LOCALSTATEDIR:-/var}
DESTDIR=${DESTDIR:-}
FORCE=${FORCE:-0}

SPOOL=$DESTDIR$LOCALSTATEDIR/spool/bearmail
STATE=$DESTDIR$LOCALSTATEDIR/lib/bearmail
BEARMAIL=$BINDIR/bearmail

say() { printf 'install-system: %s\n' "$*"; }
die() { printf 'install-system: %s\n' "$*" >&2; exit 1; }

[ -n "$DESTDIR" ] || [ "$(id -u)" -eq 0 ] || die "run me as root"
[ -x "$DESTDIR$BEARMAIL" ] || die "$DESTDIR$BEARMAIL not found: run make install first"
[ -x "$DESTDIR$BINDIR/bearmail-drop" ] || die "$DESTDIR$BINDIR/bearmail-drop not found"

case $LOCALSTATEDIR in
/var) ;;
*) say "warning: localstatedir is $LOCALSTATEDIR, not /var: the contrib units and cron file name /var/spool/bearmail and /var/lib/bearmail; adjust them" ;;
esac

if [ -z "$DESTDIR" ]; then
	if ! getent group bearmail-drop >/dev/null; then
		groupadd --system bearmail-drop
		say "group bearmail-drop created"
	fi
	if ! getent passwd bearmail >/dev/null; then
		useradd --system --user-group --home-dir "$STATE" \
		    --no-create-home --shell /usr/sbin/nologin \
		    --comment "bearmail queue runner" bearmail
		say "user bearmail created"
	fi
fi

# owner group mode path
mkd() {
	mkdir -p "$4"
	if [ -z "$DESTDIR" ]; then
		chown "$1:$2" "$4"
	fi
	chmod "$3" "$4"
}
mkd bearmail bearmail 0711 "$SPOOL"
for d in tmp q failed; do
	mkd bearmail bearmail 0700 "$SPOOL/$d"
done
mkd bearmail bearmail-drop 1730 "$SPOOL/maildrop"
mkd bearmail bearmail 0700 "$STATE"
say "queue $SPOOL and state $STATE ready"

DROP=$DESTDIR$BINDIR/bearmail-drop
if [ -z "$DESTDIR" ]; then
	chown root:bearmail-drop "$DROP"
fi
chmod 2755 "$DROP"
say "$DROP is set-group-ID bearmail-drop"

link() {
	dir=$DESTDIR$1
	name=$2
	[ -d "$dir" ] || return 0
	if [ -e "$dir/$name" ] || [ -L "$dir/$name" ]; then
		if [ "$(readlink "$dir/$name" || true)" = "$BEARMAIL" ]; then
			return 0
		fi
		if [ "$FORCE" != 1 ]; then
			say "kept $dir/$name (FORCE=1 replaces it)"
			return 0
		fi
		rm -f "$dir/$name"
	fi
	ln -s "$BEARMAIL" "$dir/$name"
	say "$dir/$name -> $BEARMAIL"
}
mkdir -p "$DESTDIR/usr/sbin" "$DESTDIR/usr/lib"
link /usr/sbin sendmail
link /usr/lib sendmail
link "$SBINDIR" sendmail
link "$BINDIR" send-mail
link "$BINDIR" mailq
link "$BINDIR" newaliases

if [ -d "$DESTDIR/etc/systemd/system" ] || [ -d /run/systemd/system ]; then
	unitdir=$DESTDIR/etc/systemd/system
	mkdir -p "$unitdir"
	for u in bearmail-queue.service bearmail-queue.path \
	    bearmail-queue.timer; do
		sed "s|/usr/bin/bearmail|$BEARMAIL|g" "$CONTRIB/$u" \
		    >"$unitdir/$u"
		chmod 0644 "$unitdir/$u"
	done
	say "systemd units installed in $unitdir"
	if [ -z "$DESTDIR" ] && [ -d /run/systemd/system ]; then
		systemctl daemon-reload
		systemctl enable --now bearmail-queue.path \
		    bearmail-queue.timer
		say "bearmail-queue.path and bearmail-queue.timer enabled"
	fi
else
	mkdir -p "$DESTDIR/etc/cron.d"
	sed "s|/usr/bin/bearmail|$BEARMAIL|g" \
	    "$CONTRIB/bearmail-queue.cron" >"$DESTDIR/etc/cron.d/bearmail"
	chmod 0644 "$DESTDIR/etc/cron.d/bearmail"
	say "cron job installed in $DESTDIR/etc/cron.d/bearmail"
fi

say "done; now authorize the account as the bearmail user:"
say "  runuser -u bearmail -- $BINDIR/bearmail-auth login ACCOUNT"
