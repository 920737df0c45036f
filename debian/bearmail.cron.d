# /etc/cron.d/bearmail: deliver bearmail's queue every five minutes on a
# system without systemd.  With systemd, the units bearmail-queue.path
# and bearmail-queue.timer do it and this job does nothing.
#
# MAILTO is empty: cron must not mail this job's output through the very
# queue that may be stuck; failures go to the log (syslog by default).
MAILTO=""
*/5 * * * *	bearmail	[ ! -d /run/systemd/system ] && [ -x /usr/bin/bearmail ] && /usr/bin/bearmail --queue-due
