/*
 * Unit tests: configuration files, precedence, provider defaults, value
 * checks with file:line, account selection.  Every file is written to a
 * fresh temporary directory; HOME and the XDG variables point into it.
 */
#include "config.h"

#include <sys/stat.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "conf.h"
#include "tap.h"

static char tmp[256];
static char path_sys[512], path_user[512], path_expl[512], path_secret[512];

static void
write_file(const char *path, const char *text, size_t len)
{
	FILE *f = fopen(path, "w");

	if (f == NULL || fwrite(text, 1, len, f) != len || fclose(f) != 0) {
		printf("Bail out! cannot write %s: %s\n", path,
		    strerror(errno));
		exit(1);
	}
}

static void
put(const char *path, const char *text)
{
	write_file(path, text, strlen(text));
}

static void
mkdir_p(const char *sub)
{
	char p[512];

	snprintf(p, sizeof(p), "%s/%s", tmp, sub);
	if (mkdir(p, 0700) != 0 && errno != EEXIST) {
		printf("Bail out! mkdir %s: %s\n", p, strerror(errno));
		exit(1);
	}
}

/* Load text as the explicit file. */
static enum status
load(const char *text, struct conf *c, struct errinfo *ei)
{
	put(path_expl, text);
	st_clear(ei);
	return conf_load(c, path_expl, ei);
}

/* Loading text fails with ST_CONFIG and the message contains want. */
static void
fails(const char *text, const char *want, const char *what)
{
	struct conf c;
	struct errinfo ei;
	enum status st = load(text, &c, &ei);

	ok(st == ST_CONFIG && strstr(ei.msg, want) != NULL &&
	    c.naccounts == 0 && c.accounts == NULL, "refused: %s", what);
	if (st != ST_CONFIG || strstr(ei.msg, want) == NULL)
		printf("#   st %s, msg '%s'\n#   want '%s'\n", st_name(st),
		    ei.msg, want);
	conf_free(&c);
}

/* Loading text fails with exactly "EXPL:line: want". */
static void
fails_exact(const char *text, int line, const char *want, const char *what)
{
	struct conf c;
	struct errinfo ei;
	char full[1024];

	snprintf(full, sizeof(full), "%s:%d: %s", path_expl, line, want);
	is_int(load(text, &c, &ei), ST_CONFIG, "refused: %s", what);
	is_str(ei.msg, full, "message: %s", what);
	conf_free(&c);
}

static void
loads(const char *text, const char *what)
{
	struct conf c;
	struct errinfo ei;
	enum status st = load(text, &c, &ei);

	ok(st == ST_OK, "accepted: %s", what);
	if (st != ST_OK)
		printf("#   %s\n", ei.msg);
	conf_free(&c);
}

#define ACCT "[a]\nuser = a@example.com\nclient_id = cid\n"

static void
test_google_defaults(void)
{
	struct conf c;
	struct errinfo ei;
	const struct account *a;
	char want[600];

	is_int(load(ACCT, &c, &ei), ST_OK, "minimal google account");
	is_int(c.naccounts, 1, "one account");
	a = &c.accounts[0];
	is_str(a->name, "a", "name");
	is_int(a->provider, PROV_GOOGLE, "provider defaults to google");
	is_str(a->user, "a@example.com", "user");
	is_str(a->from, "a@example.com", "from defaults to user");
	is_str(a->from_addr, "a@example.com", "from_addr is user");
	is_str(a->smtp.host, "smtp.gmail.com", "smtp host");
	is_int(a->smtp.port, 587, "smtp port");
	is_int(a->smtp.tls, TLSM_STARTTLS, "smtp starttls");
	is_str(a->imap.host, "imap.gmail.com", "imap host");
	is_int(a->imap.port, 993, "imap port");
	is_int(a->imap.tls, TLSM_TLS, "imap tls");
	is_str(a->pop.host, "pop.gmail.com", "pop host");
	is_int(a->pop.port, 995, "pop port");
	is_int(a->pop.tls, TLSM_TLS, "pop tls");
	is_int(a->auth, MECH_XOAUTH2, "auth xoauth2");
	is_str(a->auth_endpoint, "https://accounts.google.com/o/oauth2/v2/auth",
	    "google auth endpoint");
	is_str(a->token_endpoint, "https://oauth2.googleapis.com/token",
	    "google token endpoint");
	is_str(a->revoke_endpoint, "https://oauth2.googleapis.com/revoke",
	    "google revoke endpoint");
	ok(a->device_endpoint == NULL, "google: no device endpoint");
	is_str(a->scope, "https://mail.google.com/", "google scope");
	ok(a->tenant == NULL && a->client_secret == NULL &&
	    a->password_command == NULL && a->ca_file == NULL &&
	    a->domain == NULL && a->deliver == NULL &&
	    a->deliver_kind == DELIVER_NONE && a->service_account_key == NULL,
	    "unset optional fields are NULL");
	is_str(a->client_id, "cid", "client_id");
	is_int(a->timeout, 60, "timeout 60");
	is_int(a->rewrite_from, REWRITE_AUTO, "rewrite_from auto");
	is_str(a->file, path_expl, "account file");
	is_int(a->line, 1, "account line");
	is_int(c.queue, QUEUE_ON_FAILURE, "queue on-failure");
	is_str(c.log, "syslog", "log syslog");
	is_int(c.max_queue_age, 5 * 86400, "max_queue_age 5d");
	ok(c.aliases == NULL && c.bounce_to == NULL && c.account == NULL,
	    "aliases, bounce_to, account unset");
	is_str(c.explicit_path, path_expl, "explicit path recorded");
	is_int(c.nfiles, 1, "one file read");
	is_str(c.files[0], path_expl, "files[0]");
	conf_free(&c);

	/* Implicit TLS without a port gets the implicit-TLS port. */
	is_int(load(ACCT "smtp_tls = tls\nimap_tls = starttls\n"
	    "pop_tls = starttls\n", &c, &ei), ST_OK, "tls modes");
	a = &c.accounts[0];
	ok(a->smtp.port == 465 && a->smtp.tls == TLSM_TLS, "smtp tls -> 465");
	ok(a->imap.port == 143 && a->imap.tls == TLSM_STARTTLS,
	    "imap starttls -> 143");
	ok(a->pop.port == 110 && a->pop.tls == TLSM_STARTTLS,
	    "pop starttls -> 110");
	conf_free(&c);

	snprintf(want, sizeof(want), "%s:1: account a: client_id is required "
	    "for provider google", path_expl);
	is_int(load("[a]\nuser = u@x.org\n", &c, &ei), ST_CONFIG,
	    "client_id required");
	is_str(ei.msg, want, "client_id message");
	conf_free(&c);
}

static void
test_microsoft(void)
{
	struct conf c;
	struct errinfo ei;
	const struct account *a;

	is_int(load("[m]\nprovider = microsoft\nuser = m@contoso.com\n"
	    "client_id = x\n", &c, &ei), ST_OK, "microsoft account");
	a = &c.accounts[0];
	is_str(a->tenant, "common", "tenant common");
	is_str(a->smtp.host, "smtp.office365.com", "ms smtp host");
	is_int(a->smtp.port, 587, "ms smtp port");
	is_str(a->imap.host, "outlook.office365.com", "ms imap host");
	is_int(a->imap.port, 993, "ms imap port");
	is_str(a->pop.host, "outlook.office365.com", "ms pop host");
	is_int(a->pop.port, 995, "ms pop port");
	is_str(a->auth_endpoint, "https://login.microsoftonline.com/common/"
	    "oauth2/v2.0/authorize", "ms auth endpoint");
	is_str(a->token_endpoint, "https://login.microsoftonline.com/common/"
	    "oauth2/v2.0/token", "ms token endpoint");
	is_str(a->device_endpoint, "https://login.microsoftonline.com/common/"
	    "oauth2/v2.0/devicecode", "ms device endpoint");
	ok(a->revoke_endpoint == NULL, "ms: no revoke endpoint");
	is_str(a->scope, "https://outlook.office.com/SMTP.Send "
	    "https://outlook.office.com/IMAP.AccessAsUser.All "
	    "https://outlook.office.com/POP.AccessAsUser.All offline_access",
	    "ms scope");
	conf_free(&c);

	is_int(load("[m]\nprovider = microsoft\nuser = m@contoso.com\n"
	    "client_id = x\ntenant = contoso.onmicrosoft.com\n"
	    "token_endpoint = http://127.0.0.1:8080/tok\n", &c, &ei), ST_OK,
	    "microsoft with tenant");
	a = &c.accounts[0];
	is_str(a->auth_endpoint, "https://login.microsoftonline.com/"
	    "contoso.onmicrosoft.com/oauth2/v2.0/authorize", "tenant in URL");
	is_str(a->token_endpoint, "http://127.0.0.1:8080/tok",
	    "configured endpoint beats the tenant's");
	conf_free(&c);

	fails_exact("[m]\nprovider = microsoft\nuser = m@c.com\nclient_id = x\n"
	    "tenant = a/b\n", 5, "tenant: 'a/b' is not a tenant name or ID",
	    "tenant with a slash");
	fails_exact(ACCT "tenant = contoso\n", 4,
	    "tenant does not apply to provider google (account a)",
	    "tenant on google");
}

static void
test_oauth2_password(void)
{
	struct conf c;
	struct errinfo ei;
	const struct account *a;

	fails_exact("[o]\nprovider = oauth2\nuser = o@x.org\n"
	    "client_id = c\n", 1,
	    "account o: provider oauth2 needs token_endpoint",
	    "oauth2 without token_endpoint");
	is_int(load("[o]\nprovider = oauth2\nuser = o@x.org\nclient_id = c\n"
	    "token_endpoint = https://id.example.org/token\n"
	    "smtp_host = mail.example.org\n", &c, &ei), ST_OK,
	    "oauth2 minimal");
	a = &c.accounts[0];
	ok(a->auth_endpoint == NULL && a->device_endpoint == NULL &&
	    a->revoke_endpoint == NULL && a->scope == NULL,
	    "oauth2: optional endpoints and scope stay NULL");
	is_str(a->smtp.host, "mail.example.org", "oauth2 smtp host");
	ok(a->imap.host == NULL && a->pop.host == NULL,
	    "oauth2: unset hosts NULL");
	is_int(a->imap.port, 993, "oauth2: imap port from tls mode");
	is_int(a->auth, MECH_XOAUTH2, "oauth2 default xoauth2");
	conf_free(&c);

	is_int(load("[defaults]\nclient_id = shared\ntenant = t1\n"
	    "[p]\nprovider = password\nuser = p\nsmtp_host = mail.x.org\n"
	    "password_command = pass show mail\n", &c, &ei), ST_OK,
	    "password account; OAuth keys in [defaults] ignored");
	a = &c.accounts[0];
	is_int(a->auth, MECH_PLAIN, "password: auth plain");
	is_str(a->password_command, "pass show mail", "password_command");
	ok(a->client_id == NULL && a->tenant == NULL &&
	    a->token_endpoint == NULL && a->scope == NULL,
	    "password: no OAuth fields");
	ok(a->smtp.host != NULL && a->imap.host == NULL, "password: hosts");
	conf_free(&c);

	fails_exact("[p]\nprovider = password\nuser = p\n", 1,
	    "account p: provider password needs password_command",
	    "password without command");
	fails_exact("[p]\nprovider = password\nuser = p\npassword_command = x\n"
	    "auth = xoauth2\n", 5, "auth xoauth2 does not go with provider "
	    "password (account p): use plain or login", "password + xoauth2");
	fails_exact(ACCT "auth = plain\n", 4, "auth plain does not go with "
	    "provider google (account a): use xoauth2 or oauthbearer",
	    "google + plain");
	fails_exact(ACCT "password_command = x\n", 4, "password_command does "
	    "not apply to provider google (account a)",
	    "password_command on google");
	fails_exact("[p]\nprovider = password\nuser = p\npassword_command = x\n"
	    "client_id = y\n", 5, "client_id does not apply to provider "
	    "password (account p)", "client_id on password");
	loads("[p]\nprovider = password\nuser = p\npassword_command = x\n"
	    "auth = login\n", "password + login");
	loads(ACCT "auth = oauthbearer\n", "google + oauthbearer");
}

static void
test_values(void)
{
	struct conf c;
	struct errinfo ei;

	/* Every key, valid. */
	is_int(load("[defaults]\naccount = a\nqueue = never\n"
	    "queue_dir = /q\nstate_dir = ~/st\nlog = /var/log/bm.log\n"
	    "aliases = /etc/aliases\nmax_queue_age = 12h\n"
	    "bounce_to = postmaster@example.com\n"
	    "[a]\nprovider = google\nuser = a@example.com\n"
	    "from = a@example.com, *@example.org\n"
	    "smtp_host = 127.0.0.1\nsmtp_port = 2525\nsmtp_tls = none\n"
	    "imap_host = ::1\nimap_port = 1143\nimap_tls = none\n"
	    "pop_host = localhost\npop_port = 1110\npop_tls = none\n"
	    "auth = oauthbearer\nclient_id = id.apps\nclient_secret = s3cr3t\n"
	    "auth_endpoint = http://127.0.0.1:9/auth\n"
	    "token_endpoint = http://[::1]:9/token\n"
	    "device_endpoint = https://id.example.com/device\n"
	    "revoke_endpoint = https://id.example.com:8443/revoke?x=1\n"
	    "scope = a b c\nca_file = /etc/ca.pem\ndomain = host.example.com\n"
	    "timeout = 3600\nrewrite_from = never\n"
	    "deliver = maildir:~/Maildir\n", &c, &ei), ST_OK,
	    "every key valid");
	if (c.naccounts == 1) {
		const struct account *a = &c.accounts[0];
		char want[600];

		is_str(c.account, "a", "account");
		is_int(c.queue, QUEUE_NEVER, "queue never");
		is_str(c.queue_dir, "/q", "queue_dir");
		snprintf(want, sizeof(want), "%s/home/st", tmp);
		is_str(c.state_dir, want, "state_dir ~ expanded");
		is_str(c.log, "/var/log/bm.log", "log path");
		is_str(c.aliases, "/etc/aliases", "aliases");
		is_int(c.max_queue_age, 12 * 3600, "max_queue_age 12h");
		is_str(c.bounce_to, "postmaster@example.com", "bounce_to");
		is_str(a->from, "a@example.com, *@example.org", "from list");
		is_str(a->from_addr, "a@example.com", "from_addr");
		ok(a->smtp.port == 2525 && a->smtp.tls == TLSM_NONE,
		    "smtp port/tls");
		ok(a->imap.port == 1143 && a->imap.tls == TLSM_NONE &&
		    strcmp(a->imap.host, "::1") == 0, "imap");
		ok(a->pop.port == 1110 && a->pop.tls == TLSM_NONE, "pop");
		is_int(a->auth, MECH_OAUTHBEARER, "auth oauthbearer");
		is_str(a->client_secret, "s3cr3t", "client_secret");
		is_str(a->token_endpoint, "http://[::1]:9/token",
		    "http on [::1]");
		is_str(a->scope, "a b c", "scope with spaces");
		is_str(a->ca_file, "/etc/ca.pem", "ca_file");
		is_str(a->domain, "host.example.com", "domain");
		is_str(conf_domain(a), "host.example.com", "conf_domain");
		is_int(a->timeout, 3600, "timeout");
		is_int(a->rewrite_from, REWRITE_NEVER, "rewrite_from");
		snprintf(want, sizeof(want), "maildir:%s/home/Maildir", tmp);
		is_str(a->deliver, want, "deliver expanded");
		is_int(a->deliver_kind, DELIVER_MAILDIR, "deliver kind");
		is_str(a->deliver_arg, want + 8, "deliver arg");
	}
	conf_free(&c);

	is_int(load(ACCT "deliver = mda:/usr/bin/procmail -d $USER\n", &c, &ei),
	    ST_OK, "deliver mda");
	ok(c.naccounts == 1 && c.accounts[0].deliver_kind == DELIVER_MDA &&
	    strcmp(c.accounts[0].deliver_arg,
	    "/usr/bin/procmail -d $USER") == 0,
	    "mda command kept");
	conf_free(&c);
	is_int(load(ACCT "deliver = mbox:/var/mail/a\nrewrite_from = always\n"
	    "[defaults]\nqueue = always\nlog = stderr\n", &c, &ei), ST_OK,
	    "deliver mbox");
	ok(c.naccounts == 1 && c.accounts[0].deliver_kind == DELIVER_MBOX &&
	    strcmp(c.accounts[0].deliver_arg, "/var/mail/a") == 0 &&
	    c.accounts[0].rewrite_from == REWRITE_ALWAYS &&
	    c.queue == QUEUE_ALWAYS && strcmp(c.log, "stderr") == 0,
	    "mbox, always, stderr");
	conf_free(&c);

	/* Every key, invalid: the exact text for the common ones. */
	fails_exact(ACCT "smtp_port = 0\n", 4,
	    "smtp_port: '0' is not a port number (1-65535)", "port 0");
	fails_exact(ACCT "imap_port = 65536\n", 4,
	    "imap_port: '65536' is not a port number (1-65535)", "port 65536");
	fails(ACCT "pop_port = 99x\n", ":4: pop_port:", "port with junk");
	fails(ACCT "smtp_port = -25\n", ":4: smtp_port:", "negative port");
	fails_exact(ACCT "smtp_port = 465\n", 4, "smtp_port 465 is implicit "
	    "TLS: set smtp_tls = tls", "465 with starttls");
	fails_exact(ACCT "smtp_tls = tls\nsmtp_port = 587\n", 5, "smtp_port "
	    "587 expects STARTTLS: set smtp_tls = starttls", "587 with tls");
	fails(ACCT "imap_tls = starttls\nimap_port = 993\n",
	    ":5: imap_port 993 is implicit TLS", "993 with starttls");
	fails(ACCT "pop_port = 110\n", ":4: pop_port 110 expects STARTTLS",
	    "110 with tls");
	loads(ACCT "smtp_port = 465\nsmtp_tls = tls\n", "465 with tls");
	loads(ACCT "smtp_port = 25\n", "25 with starttls");
	fails(ACCT "smtp_port = 99999999999999999999999\n", ":4: smtp_port:",
	    "huge port");
	fails_exact(ACCT "smtp_tls = ssl\n", 4,
	    "smtp_tls: 'ssl' is not one of starttls, tls, none", "tls ssl");
	fails(ACCT "imap_tls = yes\n", ":4: imap_tls:", "imap_tls yes");
	fails(ACCT "pop_tls = on\n", ":4: pop_tls:", "pop_tls on");
	fails_exact(ACCT "provider = yahoo\n", 4, "provider: 'yahoo' is not "
	    "one of google, microsoft, oauth2, password", "provider yahoo");
	fails_exact(ACCT "auth = cram-md5\n", 4, "auth: 'cram-md5' is not one "
	    "of xoauth2, oauthbearer, plain, login", "auth cram-md5");
	fails_exact(ACCT "timeout = 0\n", 4, "timeout: '0' is not a number of "
	    "seconds between 1 and 3600", "timeout 0");
	fails(ACCT "timeout = 3601\n", ":4: timeout:", "timeout 3601");
	fails(ACCT "timeout = 60s\n", ":4: timeout:", "timeout 60s");
	fails(ACCT "timeout = -1\n", ":4: timeout:", "timeout -1");
	fails(ACCT "timeout = 1e3\n", ":4: timeout:", "timeout 1e3");
	fails_exact(ACCT "rewrite_from = sometimes\n", 4, "rewrite_from: "
	    "'sometimes' is not one of auto, never, always", "rewrite_from");
	fails_exact("[defaults]\nqueue = later\n" ACCT, 2, "queue: 'later' is "
	    "not one of on-failure, always, never", "queue later");
	fails_exact("[defaults]\nlog = mylog\n" ACCT, 2, "log: 'mylog' is not "
	    "syslog, stderr or an absolute path", "log relative");
	fails_exact("[defaults]\nmax_queue_age = 5x\n" ACCT, 2,
	    "max_queue_age: '5x' is not a duration between 1s and 365d "
	    "(like 5d, 12h, 30m, "
	    "45s)", "duration 5x");
	fails("[defaults]\nmax_queue_age = 0\n" ACCT, ":2: max_queue_age:",
	    "duration 0");
	fails("[defaults]\nmax_queue_age = 400d\n" ACCT, ":2: max_queue_age:",
	    "duration 400d");
	fails_exact("[defaults]\nqueue_dir = var/q\n" ACCT, 2, "queue_dir: "
	    "'var/q' is not an absolute path (or one starting with ~/)",
	    "relative queue_dir");
	fails("[defaults]\nstate_dir = ~bob/x\n" ACCT, ":2: state_dir:",
	    "~user not supported");
	fails("[defaults]\naliases = aliases\n" ACCT, ":2: aliases:",
	    "relative aliases");
	fails("[defaults]\nbounce_to = a b@c\n" ACCT, ":2: bounce_to:",
	    "bounce_to with space");
	fails_exact("[defaults]\naccount = b\n" ACCT, 2, "account: no section "
	    "[b]", "account names no section");
	fails("[defaults]\naccount = ../x\n" ACCT, ":2: account:",
	    "account with a slash");
	fails(ACCT "user = a b\n", "'user' is already set in [a] at line 2",
	    "user twice");
	fails("[a]\nclient_id = x\nuser = a b@c\n", ":3: user:",
	    "user with a space");
	fails_exact(ACCT "from = alice\n", 4, "from: 'alice' is not a "
	    "comma-separated list of addresses and *@domain patterns",
	    "from without @");
	fails(ACCT "from = a@x.org,,b@y.org\n", ":4: from:",
	    "empty from entry");
	fails(ACCT "from = <a@x.org>\n", ":4: from:", "from with brackets");
	fails(ACCT "from = *@\n", ":4: from:", "from *@ without domain");
	fails(ACCT "from = a@x:y, b@z.org\n", ":4: from:", "colon in domain");
	loads(ACCT "from = a@x.org, b@z.org\n", "two addresses");
	fails_exact(ACCT "smtp_host = smtp gmail\n", 4, "smtp_host: "
	    "'smtp gmail' is not a host name", "host with space");
	fails(ACCT "imap_host = -x\n", ":4: imap_host:", "host starting -");
	fails(ACCT "pop_host = a/b\n", ":4: pop_host:", "host with slash");
	fails(ACCT "domain = a b\n", ":4: domain:", "domain with space");
	fails_exact(ACCT "client_secret = a b\n", 4, "client_secret: spaces or "
	    "control characters in the secret", "secret not echoed");
	fails(ACCT "client_secret_file = secret\n", ":4: client_secret_file:",
	    "relative secret file");
	fails(ACCT "ca_file = ca.pem\n", ":4: ca_file:", "relative ca_file");
	fails(ACCT "service_account_key = key.json\nimpersonate = a@b.c\n",
	    ":4: service_account_key:", "relative key");
	fails(ACCT "impersonate = bob\n", ":4: impersonate:",
	    "impersonate not an address");
	fails(ACCT "deliver = maildir:Maildir\n", ":4: deliver:",
	    "relative maildir");
	fails(ACCT "deliver = mda:\n", ":4: deliver:", "empty mda");
	fails_exact(ACCT "deliver = procmail\n", 4, "deliver: 'procmail' is "
	    "not maildir:PATH, mbox:PATH or mda:COMMAND "
	    "(with an absolute PATH)",
	    "deliver without a kind");
	fails_exact(ACCT "scope = a\tb\n", 4,
	    "scope: control characters in the value", "scope with a tab");
	fails(ACCT "client_id = a b\n", "already set", "client_id twice");
	fails("[a]\nuser = a@b.c\nclient_id = a b\n", ":3: client_id:",
	    "client_id with space");
}

static void
test_endpoints(void)
{
	fails_exact(ACCT "token_endpoint = http://oauth2.example.com/token\n",
	    4,
	    "token_endpoint: 'http://oauth2.example.com/token': http:// is "
	    "allowed only for a loopback host; use https://", "remote http");
	fails_exact(ACCT "auth_endpoint = ftp://x.org/\n", 4, "auth_endpoint: "
	    "'ftp://x.org/' must start with https://", "ftp scheme");
	fails(ACCT "device_endpoint = https://\n", ":4: device_endpoint: "
	    "'https://' is not a valid URL", "no host");
	fails(ACCT "revoke_endpoint = https://x.org:0/\n", ":4:", "port 0");
	fails(ACCT "revoke_endpoint = https://x.org:/\n", ":4:", "empty port");
	fails(ACCT "revoke_endpoint = https://x.org:99999/\n", ":4:",
	    "port 99999");
	fails(ACCT "token_endpoint = https://u:p@x.org/\n",
	    "user information is not allowed", "userinfo");
	fails(ACCT "token_endpoint = https://x.org/a b\n", "spaces or control",
	    "space in URL");
	fails(ACCT "token_endpoint = http://127.0.0.1.evil.org/\n",
	    "loopback", "127.0.0.1 as a name prefix is not loopback");
	fails(ACCT "token_endpoint = http://[::2]/\n", "loopback",
	    "::2 is not loopback");
	loads(ACCT "token_endpoint = http://127.0.0.1:8080/token\n",
	    "http on 127.0.0.1");
	loads(ACCT "token_endpoint = http://localhost/token\n",
	    "http on localhost");
	loads(ACCT "token_endpoint = HTTPS://Oauth2.Example.COM/t?a=b#f\n",
	    "https, any case");
}

static void
test_loopback(void)
{
	ok(conf_is_loopback("127.0.0.1"), "127.0.0.1");
	ok(conf_is_loopback("127.255.0.3"), "127.255.0.3");
	ok(conf_is_loopback("::1"), "::1");
	ok(conf_is_loopback("[::1]"), "[::1]");
	ok(conf_is_loopback("0:0:0:0:0:0:0:1"), "long ::1");
	ok(conf_is_loopback("::ffff:127.0.0.1"), "v4-mapped loopback");
	ok(conf_is_loopback("LocalHost"), "localhost any case");
	ok(!conf_is_loopback("128.0.0.1"), "128.0.0.1");
	ok(!conf_is_loopback("10.0.0.1"), "10.0.0.1");
	ok(!conf_is_loopback("::2"), "::2");
	ok(!conf_is_loopback("localhost.example.com"), "localhost.example.com");
	ok(!conf_is_loopback("127.0.0.1x"), "127.0.0.1x");
	ok(!conf_is_loopback(""), "empty");
	ok(!conf_is_loopback(NULL), "NULL");

	fails_exact(ACCT "smtp_tls = none\n", 4, "smtp_tls = none is allowed "
	    "only for a loopback host, not smtp.gmail.com",
	    "tls none on the provider's host");
	fails(ACCT "imap_host = 10.1.1.1\nimap_tls = none\n",
	    ":5: imap_tls = none is allowed only", "tls none on 10.1.1.1");
	/* The check follows [defaults] too, at the line that said none. */
	fails("[defaults]\npop_tls = none\n" ACCT, ":2: pop_tls = none",
	    "tls none from [defaults]");
	loads(ACCT "smtp_host = 127.0.0.2\nsmtp_tls = none\n", "none on 127/8");
	loads(ACCT "smtp_host = localhost\nsmtp_tls = none\n",
	    "none on localhost");
	loads(ACCT "smtp_host = ::1\nsmtp_tls = none\n", "none on ::1");
}

static void
test_syntax(void)
{
	char longline[6000];
	char nul[] = "[a]\nuser = a@b.c\nclient_id = x\x00y\n";

	fails_exact(ACCT "smtp_hots = x\n", 4, "unknown key 'smtp_hots' in [a] "
	    "(did you mean 'smtp_host'?)", "typo gets a hint");
	fails_exact(ACCT "host = x\n", 4, "unknown key 'host' in [a] "
	    "(did you mean 'smtp_host'?)", "msmtp name gets a hint");
	fails_exact(ACCT "User = x\n", 4, "unknown key 'User' in [a] "
	    "(did you mean 'user'?)", "case gets a hint");
	fails_exact(ACCT "frobnicate = x\n", 4, "unknown key 'frobnicate' in "
	    "[a]", "no hint for a wild key");
	fails_exact(ACCT "queue = never\n", 4, "'queue' is a global key: set "
	    "it in [defaults], not in [a]", "global key in account");
	fails_exact("user = x\n" ACCT, 1, "'user' before any section: put it "
	    "under [defaults] or an [account]", "key before a section");
	fails_exact(ACCT "nonsense\n", 4, "syntax error: expected 'key = "
	    "value', '[section]' or a comment", "line without =");
	fails_exact(ACCT "[b\n", 4, "syntax error: expected 'key = value', "
	    "'[section]' or a comment", "unclosed section");
	fails_exact(ACCT "   continued\n", 4, "syntax error: expected 'key = "
	    "value', '[section]' or a comment", "no continuation lines");
	fails_exact("[Defaults]\n" ACCT, 1, "[Defaults]: did you mean "
	    "[defaults]? (that name is reserved)", "[Defaults]");
	fails_exact("[default]\n" ACCT, 1, "[default]: did you mean "
	    "[defaults]? (that name is reserved)", "[default]");
	fails("[a b]\nuser = x\n", ":1: [a b]: an account name is",
	    "name with a space");
	fails("[../x]\nuser = x\n", ":1: [../x]: an account name is",
	    "name with a slash");
	fails("[aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa]\nuser = x\n",
	    ":1: [", "name too long");
	fails("[]\nuser = x\n", ":1: []", "empty name");
	fails_exact(ACCT "[b] junk\n", 4, "text after the section header [b]",
	    "junk after ]");

	memset(longline, 'x', sizeof(longline));
	memcpy(longline, ACCT "scope = ", strlen(ACCT "scope = "));
	longline[sizeof(longline) - 2] = '\n';
	longline[sizeof(longline) - 1] = '\0';
	fails_exact(longline, 4, "line longer than 4096 bytes", "long line");

	put(path_expl, "");
	write_file(path_expl, nul, sizeof(nul) - 1);
	{
		struct conf c;
		struct errinfo ei;
		char want[600];

		st_clear(&ei);
		is_int(conf_load(&c, path_expl, &ei), ST_CONFIG, "NUL byte");
		snprintf(want, sizeof(want), "%s:3: NUL byte in line",
		    path_expl);
		is_str(ei.msg, want, "NUL byte message");
		conf_free(&c);
	}

	/* Comments, blank lines, CRLF, a BOM, spaces around '='. */
	loads("\xEF\xBB\xBF# comment\r\n; another\r\n\r\n[a]\r\n"
	    "  user=a@b.c  \r\n\tclient_id   =   x\r\n", "comments, CRLF, BOM");
	/* ';' after a value is part of it (no inline comments). */
	fails(ACCT "timeout = 30 ; seconds\n", ":4: timeout:",
	    "no inline comments");
	/* An account without keys of its own still exists. */
	{
		struct conf c;
		struct errinfo ei;

		is_int(load("[defaults]\nuser = d@x.org\nclient_id = c\n[e]\n",
		    &c, &ei), ST_OK, "empty section is an account");
		ok(c.naccounts == 1 && strcmp(c.accounts[0].name, "e") == 0 &&
		    c.accounts[0].line == 4 &&
		    strcmp(c.accounts[0].user, "d@x.org") == 0,
		    "it inherits [defaults]");
		conf_free(&c);
	}
	fails_exact("[defaults]\nclient_id = c\n[a]\ntimeout = 5\n", 3,
	    "account a: user is required", "user missing");
}

static void
test_secret_file(void)
{
	struct conf c;
	struct errinfo ei;
	char text[1024], want[1024];

	put(path_secret, "  not trimmed at the start\n");
	snprintf(text, sizeof(text), ACCT "client_secret_file = %s\n",
	    path_secret);
	fails(text, ":4: client_secret_file", "secret with spaces");

	put(path_secret, "GOCSPX-abc123\r\nsecond line\n");
	is_int(load(text, &c, &ei), ST_OK, "client_secret_file");
	if (c.naccounts == 1)
		is_str(c.accounts[0].client_secret, "GOCSPX-abc123",
		    "first line, CR dropped");
	conf_free(&c);

	put(path_secret, "");
	fails(text, ":4: client_secret_file", "empty secret file");

	snprintf(text, sizeof(text), ACCT "client_secret_file = %s.none\n",
	    path_secret);
	fails(text, ":4: client_secret_file", "missing secret file");

	put(path_secret, "s1\n");
	snprintf(text, sizeof(text), ACCT "client_secret = s2\n"
	    "client_secret_file = %s\n", path_secret);
	snprintf(want, sizeof(want), ":5: client_secret_file and client_secret "
	    "(%s:4) exclude each other (account a)", path_expl);
	fails(text, want, "both secret keys");

	/* The account's choice beats [defaults]' other half. */
	snprintf(text, sizeof(text),
	    "[defaults]\nclient_secret = fromdefaults\n" ACCT
	    "client_secret_file = %s\n[b]\nuser = b@x.org\n"
	    "client_id = y\n", path_secret);
	is_int(load(text, &c, &ei), ST_OK, "secret from file beats defaults");
	if (c.naccounts == 2) {
		is_str(c.accounts[0].client_secret, "s1", "account's file");
		is_str(c.accounts[1].client_secret, "fromdefaults",
		    "other account inherits");
	}
	conf_free(&c);

	/* Empty value unsets: no secret at all for this account. */
	is_int(load("[defaults]\nclient_secret = d\n" ACCT "client_secret =\n",
	    &c, &ei), ST_OK, "empty client_secret");
	ok(c.naccounts == 1 && c.accounts[0].client_secret == NULL,
	    "empty value unsets the inherited one");
	conf_free(&c);
}

static void
test_service_account(void)
{
	struct conf c;
	struct errinfo ei;

	is_int(load("[w]\nuser = w@corp.example\n"
	    "service_account_key = ~/sa.json\n"
	    "impersonate = boss@corp.example\n",
	    &c, &ei), ST_OK, "service account without client_id");
	if (c.naccounts == 1) {
		char want[600];

		snprintf(want, sizeof(want), "%s/home/sa.json", tmp);
		is_str(c.accounts[0].service_account_key, want, "key path");
		is_str(c.accounts[0].impersonate, "boss@corp.example",
		    "impersonate");
	}
	conf_free(&c);
	fails_exact("[w]\nuser = w@c.example\nservice_account_key = /k.json\n",
	    3, "account w: service_account_key and impersonate go together",
	    "key without impersonate");
	fails_exact(ACCT "impersonate = b@c.example\n", 4, "account a: "
	    "service_account_key and impersonate go together",
	    "impersonate without key");
	fails_exact("[m]\nprovider = microsoft\nuser = m@c.com\nclient_id = x\n"
	    "service_account_key = /k.json\n", 5, "service_account_key does "
	    "not apply to provider microsoft (account m)",
	    "service account on microsoft");
}

static void
test_durations(void)
{
	time_t t;

	ok(conf_parse_duration("5d", &t) && t == 5 * 86400, "5d");
	ok(conf_parse_duration("12h", &t) && t == 12 * 3600, "12h");
	ok(conf_parse_duration("30m", &t) && t == 1800, "30m");
	ok(conf_parse_duration("45s", &t) && t == 45, "45s");
	ok(conf_parse_duration("90", &t) && t == 90, "90");
	ok(conf_parse_duration("0", &t) && t == 0, "0 parses");
	ok(!conf_parse_duration("", &t), "empty");
	ok(!conf_parse_duration("d", &t), "unit alone");
	ok(!conf_parse_duration("-5d", &t), "negative");
	ok(!conf_parse_duration(" 5d", &t), "leading space");
	ok(!conf_parse_duration("5dd", &t), "double unit");
	ok(!conf_parse_duration("5D", &t), "upper-case unit");
	ok(!conf_parse_duration("1h30m", &t), "compound");
	ok(!conf_parse_duration("5w", &t), "weeks");
	ok(!conf_parse_duration("99999999999999999999", &t), "overflow");
	ok(!conf_parse_duration("30000d", &t), "over 2^31 seconds");
	ok(conf_parse_duration("2147483647", &t) && t == 2147483647, "2^31-1");
	ok(!conf_parse_duration(NULL, &t), "NULL");
}

static void
rm_user(void)
{
	unlink(path_user);
}

static void
test_precedence(void)
{
	struct conf c;
	struct errinfo ei;
	const struct account *a;
	char want[600];

	unsetenv("BEARMAIL_CONFIG");
	put(path_sys, "[defaults]\nqueue = never\naliases = /etc/aliases\n"
	    "timeout = 10\nclient_id = sysid\n"
	    "[a]\nuser = a@example.com\nsmtp_port = 465\nsmtp_tls = tls\n"
	    "rewrite_from = never\n"
	    "[b]\nuser = b@example.com\n");
	put(path_user, "[defaults]\nqueue = always\naliases =\n"
	    "rewrite_from = always\ntimeout = 20\n"
	    "[a]\nsmtp_port = 2465\n"
	    "[c]\nuser = c@example.com\n");

	st_clear(&ei);
	is_int(conf_load(&c, NULL, &ei), ST_OK, "system + personal");
	if (ei.st != ST_OK)
		printf("#   %s\n", ei.msg);
	is_int(c.nfiles, 2, "two files read");
	ok(c.nfiles == 2 && strcmp(c.files[0], path_sys) == 0 &&
	    strcmp(c.files[1], path_user) == 0, "in order");
	ok(c.explicit_path == NULL, "no explicit path");
	is_int(c.queue, QUEUE_ALWAYS, "personal [defaults] overrides system");
	ok(c.aliases == NULL, "empty value unsets the system's aliases");
	is_int(c.naccounts, 3, "accounts from both files");
	if (c.naccounts == 3) {
		ok(strcmp(c.accounts[0].name, "a") == 0 &&
		    strcmp(c.accounts[1].name, "b") == 0 &&
		    strcmp(c.accounts[2].name, "c") == 0, "definition order");
		a = &c.accounts[0];
		is_int(a->smtp.port, 2465, "personal account key overrides");
		is_int(a->smtp.tls, TLSM_TLS, "system account key kept");
		is_int(a->rewrite_from, REWRITE_NEVER,
		    "system [a] beats personal [defaults]");
		is_int(c.accounts[1].rewrite_from, REWRITE_ALWAYS,
		    "personal [defaults] reaches system [b]");
		is_int(a->timeout, 20, "later [defaults] wins");
		is_str(c.accounts[2].client_id, "sysid",
		    "system [defaults] reaches personal [c]");
		is_str(a->file, path_sys, "account defined in system file");
		is_str(c.accounts[2].file, path_user,
		    "account defined in personal file");
	}
	/* Personal file, not root: the user's own queue. */
	ok(!c.system, "personal file: not system");
	snprintf(want, sizeof(want), "%s/home/.local/state/bearmail/queue",
	    tmp);
	is_str(c.queue_dir, want, "user queue_dir from HOME");
	snprintf(want, sizeof(want), "%s/home/.local/state/bearmail", tmp);
	is_str(c.state_dir, want, "user state_dir from HOME");
	conf_free(&c);

	snprintf(want, sizeof(want), "%s/state", tmp);
	setenv("XDG_STATE_HOME", want, 1);
	st_clear(&ei);
	is_int(conf_load(&c, NULL, &ei), ST_OK, "again with XDG_STATE_HOME");
	snprintf(want, sizeof(want), "%s/state/bearmail/queue", tmp);
	is_str(c.queue_dir, want, "queue_dir from XDG_STATE_HOME");
	conf_free(&c);
	setenv("XDG_STATE_HOME", "relative/ignored", 1);
	st_clear(&ei);
	is_int(conf_load(&c, NULL, &ei), ST_OK, "relative XDG_STATE_HOME");
	snprintf(want, sizeof(want), "%s/home/.local/state/bearmail", tmp);
	is_str(c.state_dir, want, "relative XDG_STATE_HOME ignored");
	conf_free(&c);
	unsetenv("XDG_STATE_HOME");

	/* Root always gets the system queue. */
	conf_set_test_overrides(path_sys, 0);
	st_clear(&ei);
	is_int(conf_load(&c, NULL, &ei), ST_OK, "as root");
	ok(c.system, "root: system");
	is_str(c.queue_dir, LOCALSTATEDIR "/spool/bearmail",
	    "system queue_dir");
	is_str(c.state_dir, LOCALSTATEDIR "/lib/bearmail", "system state_dir");
	conf_free(&c);
	conf_set_test_overrides(path_sys, 1000);

	/* No personal file: system, whoever runs it. */
	rm_user();
	st_clear(&ei);
	is_int(conf_load(&c, NULL, &ei), ST_OK, "system file only");
	ok(c.system && c.nfiles == 1, "no personal file: system");
	is_str(c.queue_dir, LOCALSTATEDIR "/spool/bearmail",
	    "system queue_dir for a user");
	ok(c.aliases != NULL && strcmp(c.aliases, "/etc/aliases") == 0,
	    "system aliases kept");
	conf_free(&c);

	/* No file at all is not an error; choosing an account is. */
	unlink(path_sys);
	st_clear(&ei);
	is_int(conf_load(&c, NULL, &ei), ST_OK, "no file at all");
	ok(c.nfiles == 0 && c.naccounts == 0, "nothing read");
	is_int(conf_account(&c, NULL, &a, &ei), ST_CONFIG,
	    "no account configured");
	is_str(ei.msg, "no account is configured (no configuration file): see "
	    "bearmail.conf(5)", "message");
	conf_free(&c);

	/* The personal file from HOME when XDG_CONFIG_HOME is unset. */
	snprintf(want, sizeof(want), "%s/home/.config/bearmail/config", tmp);
	put(want, "[h]\nuser = h@x.org\nclient_id = c\n");
	unsetenv("XDG_CONFIG_HOME");
	st_clear(&ei);
	is_int(conf_load(&c, NULL, &ei), ST_OK, "~/.config/bearmail/config");
	ok(c.naccounts == 1 && strcmp(c.accounts[0].name, "h") == 0 &&
	    c.nfiles == 1 && strcmp(c.files[0], want) == 0, "read from HOME");
	conf_free(&c);
	unlink(want);
	snprintf(want, sizeof(want), "%s/xdg", tmp);
	setenv("XDG_CONFIG_HOME", want, 1);

	/* An unreadable standard file is an error (a directory here). */
	snprintf(want, sizeof(want), "%s/xdg/bearmail/config", tmp);
	if (mkdir(want, 0700) == 0) {
		st_clear(&ei);
		is_int(conf_load(&c, NULL, &ei), ST_CONFIG,
		    "unreadable personal file");
		ok(strstr(ei.msg, want) != NULL, "names it: %s", ei.msg);
		conf_free(&c);
		rmdir(want);
	}
}

static void
test_explicit(void)
{
	struct conf c;
	struct errinfo ei;
	char missing[600];

	put(path_sys, "[s]\nuser = s@x.org\nclient_id = c\n");
	put(path_user, "[u]\nuser = u@x.org\nclient_id = c\n");
	put(path_expl, "[e]\nuser = e@x.org\nclient_id = c\n");

	st_clear(&ei);
	is_int(conf_load(&c, path_expl, &ei), ST_OK, "-C file");
	ok(c.naccounts == 1 && strcmp(c.accounts[0].name, "e") == 0 &&
	    c.nfiles == 1, "-C replaces both standard files");
	ok(!c.system, "explicit file, not root: user dirs");
	conf_free(&c);

	setenv("BEARMAIL_CONFIG", path_expl, 1);
	st_clear(&ei);
	is_int(conf_load(&c, NULL, &ei), ST_OK, "BEARMAIL_CONFIG");
	ok(c.naccounts == 1 && strcmp(c.accounts[0].name, "e") == 0,
	    "BEARMAIL_CONFIG replaces both");
	is_str(c.explicit_path, path_expl,
	    "explicit_path from the environment");
	conf_free(&c);

	/* -C beats BEARMAIL_CONFIG. */
	st_clear(&ei);
	is_int(conf_load(&c, path_user, &ei), ST_OK, "-C with BEARMAIL_CONFIG");
	ok(c.naccounts == 1 && strcmp(c.accounts[0].name, "u") == 0,
	    "-C wins");
	conf_free(&c);

	setenv("BEARMAIL_CONFIG", "", 1);
	st_clear(&ei);
	is_int(conf_load(&c, NULL, &ei), ST_OK, "empty BEARMAIL_CONFIG");
	ok(c.naccounts == 2 && c.explicit_path == NULL,
	    "empty BEARMAIL_CONFIG is unset");
	conf_free(&c);
	unsetenv("BEARMAIL_CONFIG");

	snprintf(missing, sizeof(missing), "%s/nonexistent.conf", tmp);
	st_clear(&ei);
	c.naccounts = 99;
	is_int(conf_load(&c, missing, &ei), ST_CONFIG, "missing -C file");
	ok(strstr(ei.msg, missing) == ei.msg &&
	    strstr(ei.msg, "No such file") != NULL, "message: %s", ei.msg);
	ok(c.naccounts == 0 && c.accounts == NULL, "conf left empty");
	conf_free(&c);
	conf_free(&c);

	conf_set_test_overrides(path_sys, 0);
	st_clear(&ei);
	is_int(conf_load(&c, path_expl, &ei), ST_OK, "-C as root");
	ok(c.system, "root with -C: system dirs");
	conf_free(&c);
	conf_set_test_overrides(path_sys, 1000);
	unlink(path_sys);
	unlink(path_user);
}

/* A set-ID process: the system file only, no path from the environment. */
static void
test_secure(void)
{
	struct conf c;
	struct errinfo ei;
	char want[600];

	put(path_sys, "[defaults]\naliases = ~/aliases\n"
	    "[s]\nuser = s@x.org\nclient_id = c\n");
	put(path_user, "[u]\nuser = u@x.org\nclient_id = c\n");
	put(path_expl, "[e]\nuser = e@x.org\nclient_id = c\n");
	snprintf(want, sizeof(want), "%s/state", tmp);
	setenv("XDG_STATE_HOME", want, 1);
	setenv("BEARMAIL_CONFIG", path_expl, 1);

	/* The control: not set-ID, the environment is honoured. */
	conf_set_test_secure(0);
	st_clear(&ei);
	is_int(conf_load(&c, NULL, &ei), ST_OK, "not set-ID");
	ok(c.naccounts == 1 && strcmp(c.accounts[0].name, "e") == 0,
	    "not set-ID: BEARMAIL_CONFIG read");
	conf_free(&c);

	conf_set_test_secure(1);
	st_clear(&ei);
	is_int(conf_load(&c, NULL, &ei), ST_OK, "set-ID");
	ok(c.naccounts == 1 && strcmp(c.accounts[0].name, "s") == 0 &&
	    c.nfiles == 1 && strcmp(c.files[0], path_sys) == 0,
	    "set-ID: the system file only (no BEARMAIL_CONFIG, no personal)");
	ok(c.explicit_path == NULL, "set-ID: no explicit path from the "
	    "environment");
	ok(c.system, "set-ID: system directories");
	ok(c.aliases != NULL && strncmp(c.aliases, tmp, strlen(tmp)) != 0,
	    "set-ID: ~ is not taken from HOME (%s)",
	    c.aliases != NULL ? c.aliases : "(null)");
	conf_free(&c);

	/* Not even for the user's own state directory. */
	unsetenv("BEARMAIL_CONFIG");
	st_clear(&ei);
	is_int(conf_load(&c, path_expl, &ei), ST_OK, "set-ID with -C");
	ok(c.naccounts == 1 && strcmp(c.accounts[0].name, "e") == 0,
	    "set-ID: the program's own explicit path is used");
	ok(c.state_dir != NULL && strncmp(c.state_dir, tmp, strlen(tmp)) != 0,
	    "set-ID: XDG_STATE_HOME and HOME ignored (%s)",
	    c.state_dir != NULL ? c.state_dir : "(null)");
	conf_free(&c);

	conf_set_test_secure(-1);
	unsetenv("XDG_STATE_HOME");

	/* An earlier failure in ei does not stand in for this one. */
	put(path_expl, "[e]\nuser = e@x.org\nclient_id = c\nfrobnicate = 1\n");
	st_clear(&ei);
	st_error(&ei, ST_NET, "an earlier failure");
	is_int(conf_load(&c, path_expl, &ei), ST_CONFIG,
	    "unknown key: CONFIG, though ei already held NET");
	conf_free(&c);
	unlink(path_sys);
	unlink(path_user);
}

static void
test_select(void)
{
	struct conf c;
	struct errinfo ei;
	const struct account *a;

	is_int(load("[defaults]\nclient_id = c\n"
	    "[one]\nuser = one@example.com\n"
	    "[two]\nuser = two@example.com\n"
	    "from = Two@Example.com, *@Two.Example.ORG\n"
	    "[three]\nuser = three@example.net\nfrom = *@example.com\n",
	    &c, &ei), ST_OK, "three accounts");

	st_clear(&ei);
	is_int(conf_account(&c, "two", &a, &ei), ST_OK, "by name");
	ok(a != NULL && strcmp(a->name, "two") == 0, "found two");
	is_str(a->from_addr, "Two@Example.com", "from_addr: first address");
	st_clear(&ei);
	is_int(conf_account(&c, "four", &a, &ei), ST_USAGE, "unknown name");
	is_str(ei.msg, "no account 'four' (accounts: one, two, three)",
	    "unknown name message");
	ok(a == NULL, "out NULL on failure");
	st_clear(&ei);
	is_int(conf_account(&c, NULL, &a, &ei), ST_CONFIG, "no default");
	is_str(ei.msg, "3 accounts (one, two, three) and no 'account =' in "
	    "[defaults]: choose one with -a NAME", "no default message");

	a = conf_account_for(&c, "one@example.com");
	ok(a != NULL && strcmp(a->name, "one") == 0, "from defaults to user");
	a = conf_account_for(&c, "one@EXAMPLE.COM");
	ok(a != NULL && strcmp(a->name, "one") == 0, "domain case-insensitive");
	a = conf_account_for(&c, "ONE@example.com");
	ok(a != NULL && strcmp(a->name, "three") == 0,
	    "local part exact: falls to three's *@example.com");
	a = conf_account_for(&c, "<Two@example.COM>");
	ok(a != NULL && strcmp(a->name, "two") == 0, "brackets, exact entry");
	a = conf_account_for(&c, "x@two.example.org");
	ok(a != NULL && strcmp(a->name, "two") == 0, "*@domain pattern");
	a = conf_account_for(&c, "x@sub.two.example.org");
	ok(a == NULL, "pattern does not match subdomains");
	a = conf_account_for(&c, "anyone@example.com");
	ok(a != NULL && strcmp(a->name, "three") == 0, "pattern in three");
	ok(conf_account_for(&c, "three@example.net") == NULL,
	    "from replaces user for matching");
	ok(conf_account_for(&c, "nobody") == NULL, "no domain");
	ok(conf_account_for(&c, "") == NULL, "empty");
	ok(conf_account_for(&c, "<>") == NULL, "null sender");
	ok(conf_account_for(&c, NULL) == NULL, "NULL");
	conf_free(&c);

	is_int(load("[defaults]\naccount = two\nclient_id = c\n"
	    "[one]\nuser = one@example.com\n[two]\nuser = two@example.com\n",
	    &c, &ei), ST_OK, "account =");
	st_clear(&ei);
	is_int(conf_account(&c, NULL, &a, &ei), ST_OK, "default account");
	ok(a != NULL && strcmp(a->name, "two") == 0, "account = two");
	conf_free(&c);

	is_int(load(ACCT, &c, &ei), ST_OK, "single account");
	st_clear(&ei);
	is_int(conf_account(&c, NULL, &a, &ei), ST_OK, "only one");
	ok(a != NULL && strcmp(a->name, "a") == 0, "the only account");
	conf_free(&c);

	is_int(load("[defaults]\nqueue = never\n", &c, &ei), ST_OK,
	    "no account");
	st_clear(&ei);
	is_int(conf_account(&c, "x", &a, &ei), ST_USAGE, "name, none defined");
	ok(strstr(ei.msg, "no account is configured") != NULL, "%s", ei.msg);
	conf_free(&c);
}

static void
test_names(void)
{

	is_str(conf_provider_name(PROV_GOOGLE), "google", "google");
	is_str(conf_provider_name(PROV_MICROSOFT), "microsoft", "microsoft");
	is_str(conf_provider_name(PROV_OAUTH2), "oauth2", "oauth2");
	is_str(conf_provider_name(PROV_PASSWORD), "password", "password");
	is_str(conf_mech_name(MECH_XOAUTH2), "xoauth2", "xoauth2");
	is_str(conf_mech_name(MECH_OAUTHBEARER), "oauthbearer", "oauthbearer");
	is_str(conf_mech_name(MECH_PLAIN), "plain", "plain");
	is_str(conf_mech_name(MECH_LOGIN), "login", "login");
	is_str(conf_tls_name(TLSM_STARTTLS), "starttls", "starttls");
	is_str(conf_tls_name(TLSM_TLS), "tls", "tls");
	is_str(conf_tls_name(TLSM_NONE), "none", "none");
	is_str(conf_tls_name((enum tls_mode)42), "?", "out of range");
	/* conf_domain(NULL) may ask the resolver: tests stay off DNS. */
}

int
main(void)
{
	char p[512];

	snprintf(tmp, sizeof(tmp), "/tmp/test_conf.XXXXXX");
	if (mkdtemp(tmp) == NULL) {
		printf("Bail out! mkdtemp: %s\n", strerror(errno));
		return 1;
	}
	mkdir_p("home");
	mkdir_p("home/.config");
	mkdir_p("home/.config/bearmail");
	mkdir_p("xdg");
	mkdir_p("xdg/bearmail");
	snprintf(path_sys, sizeof(path_sys), "%s/system.conf", tmp);
	snprintf(path_user, sizeof(path_user), "%s/xdg/bearmail/config", tmp);
	snprintf(path_expl, sizeof(path_expl), "%s/explicit.conf", tmp);
	snprintf(path_secret, sizeof(path_secret), "%s/secret", tmp);
	snprintf(p, sizeof(p), "%s/home", tmp);
	setenv("HOME", p, 1);
	snprintf(p, sizeof(p), "%s/xdg", tmp);
	setenv("XDG_CONFIG_HOME", p, 1);
	unsetenv("XDG_STATE_HOME");
	unsetenv("BEARMAIL_CONFIG");
	conf_set_test_overrides(path_sys, 1000);

	test_google_defaults();
	test_microsoft();
	test_oauth2_password();
	test_values();
	test_endpoints();
	test_loopback();
	test_syntax();
	test_secret_file();
	test_service_account();
	test_durations();
	test_precedence();
	test_explicit();
	test_secure();
	test_select();
	test_names();

	unlink(path_expl);
	unlink(path_secret);
	snprintf(p, sizeof(p), "rm -rf '%s'", tmp);
	if (system(p) != 0)
		printf("# could not remove %s\n", tmp);
	return tap_done();
}
