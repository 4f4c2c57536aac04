/*-------------------------------------------------------------------------
 *
 * redis_conn.c
 *	  The pusher's Redis connection: URL parsing, connect with timeouts and
 *	  backoff, single commands, and the flush of every pushed key.
 *
 * Only the pusher (redis_worker.c) connects, never before its fork and
 * never from a backend; pk_redis_parse_url is also used by the check hook
 * of perfkit.redis_url and so allocates nothing.  Every call to Redis is
 * blocking with perfkit.redis_timeout as connect, send and receive
 * timeout (hiredis retries reads interrupted by signals, so the timeout is
 * what bounds a call; SIGTERM is checked between calls).  After any
 * failure the context is freed, "connected" is cleared at once, and the
 * next attempt waits 100 ms, doubling up to 500 ms: pushes resume within
 * about half a second of Redis accepting connections again, and a Redis
 * that stays down costs the pusher two attempts a second (backends never
 * wait for any of it).  An idle connection is checked with PING once
 * perfkit.redis_ping_interval passed without a reply (redis_worker.c), so
 * a Redis that closed, refuses or stalls is noticed within about that
 * interval plus the timeout.  Every reply is freed right after use;
 * nothing that can throw runs while a reply is held.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <errno.h>
#include <sys/time.h>

#include <hiredis/hiredis.h>

#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "postmaster/interrupt.h"
#include "utils/timestamp.h"

#include "redis/redis_internal.h"

#define PK_BACKOFF_MIN		100 /* ms before the first reconnect */
#define PK_BACKOFF_MAX		500 /* ms between reconnects, at most */

struct redisContext *pk_redis_conn = NULL;	/* NULL when not connected */
TimestampTz pk_redis_next_connect = 0;	/* no connection attempt before */
TimestampTz pk_redis_last_reply = 0;	/* Redis last answered on this connection */
static int	pk_backoff = 0;		/* ms of the current backoff */

/* Decode %XX escapes of a URL part into out (size bytes); false when malformed */
static bool
pk_url_decode(const char *s, int len, char *out, int size)
{
	int			o = 0;

	for (int i = 0; i < len; i++)
	{
		char		c = s[i];

		if (c == '%')
		{
			char		hex[3];
			char	   *end;

			if (i + 2 >= len)
				return false;
			hex[0] = s[i + 1];
			hex[1] = s[i + 2];
			hex[2] = '\0';
			c = (char) strtol(hex, &end, 16);
			if (*end != '\0' || c == '\0')
				return false;
			i += 2;
		}
		if (o >= size - 1)
			return false;
		out[o++] = c;
	}
	out[o] = '\0';
	return true;
}

/*
 * The user information before the host, decoded into out: [user]:password@
 * (the last @ before the path ends it).  Returns where the host starts, or
 * NULL when the user information is malformed.
 */
static const char *
pk_url_userinfo(const char *p, const char *auth_end, PkRedisUrl *out, const char **error)
{
	const char *at = NULL;
	const char *colon;

	for (const char *q = p; q < auth_end; q++)
		if (*q == '@')
			at = q;
	if (at == NULL)
		return p;
	colon = memchr(p, ':', at - p);
	if (colon == NULL || colon + 1 == at)
	{
		*error = "The user information must be [user]:password.";
		return NULL;
	}
	if (!pk_url_decode(p, colon - p, out->user, sizeof(out->user)) ||
		!pk_url_decode(colon + 1, at - colon - 1, out->password, sizeof(out->password)))
	{
		*error = "The user name or password is malformed or too long.";
		return NULL;
	}
	return at + 1;
}

/*
 * The host (a name, an address or [IPv6]) from host up to auth_end, copied
 * into out; *port is set to the text after its colon, NULL when none.
 */
static bool
pk_url_host(const char *host, const char *auth_end, PkRedisUrl *out, const char **port,
			const char **error)
{
	const char *host_end;

	*port = NULL;
	if (*host == '[')
	{
		host_end = memchr(host, ']', auth_end - host);
		if (host_end == NULL)
		{
			*error = "An IPv6 address must be closed by ].";
			return false;
		}
		host++;
		if (host_end + 1 < auth_end)
		{
			if (host_end[1] != ':')
			{
				*error = "Expected :port after the IPv6 address.";
				return false;
			}
			*port = host_end + 2;
		}
	}
	else
	{
		host_end = memchr(host, ':', auth_end - host);
		if (host_end != NULL)
			*port = host_end + 1;
		else
			host_end = auth_end;
	}
	if (host_end == host || host_end - host >= (long) sizeof(out->host))
	{
		*error = "The host name is missing or too long.";
		return false;
	}
	memcpy(out->host, host, host_end - host);
	out->host[host_end - host] = '\0';
	return true;
}

/* The port, from port up to auth_end, into out; 1 to 65535 */
static bool
pk_url_port(const char *port, const char *auth_end, PkRedisUrl *out, const char **error)
{
	char	   *end;
	long		v = strtol(port, &end, 10);

	if (end != auth_end || end == port || v < 1 || v > 65535)
	{
		*error = "The port must be a number from 1 to 65535.";
		return false;
	}
	out->port = (int) v;
	return true;
}

/* The database number of the path (/db, at path; optional) into out */
static bool
pk_url_database(const char *path, PkRedisUrl *out, const char **error)
{
	char	   *end;
	long		v;

	if (*path != '/' || path[1] == '\0')
		return true;
	v = strtol(path + 1, &end, 10);
	if (*end != '\0' || v < 0 || v > 100000)
	{
		*error = "The database must be a number, as in redis://host:6379/0.";
		return false;
	}
	out->db = (int) v;
	return true;
}

/*
 * Parse redis://[[user]:password@]host[:port][/db] (host may be [IPv6]).
 * Uses no palloc: also called by the setting's check hook.
 */
bool
pk_redis_parse_url(const char *url, PkRedisUrl *out, const char **error)
{
	const char *p;
	const char *auth_end;
	const char *port;

	memset(out, 0, sizeof(PkRedisUrl));
	out->port = 6379;
	if (strncmp(url, "redis://", 8) != 0)
	{
		*error = "The URL must start with redis:// (TLS and unix sockets are not supported).";
		return false;
	}
	p = url + 8;
	auth_end = p + strcspn(p, "/?#");
	if (*auth_end == '?' || *auth_end == '#')
	{
		*error = "URL options are not supported.";
		return false;
	}
	p = pk_url_userinfo(p, auth_end, out, error);
	return p != NULL &&
		pk_url_host(p, auth_end, out, &port, error) &&
		(port == NULL || pk_url_port(port, auth_end, out, error)) &&
		pk_url_database(auth_end, out, error);
}

/* Record an error: counter, last_error, and the server log at most every few seconds */
void
pk_redis_worker_error(const char *what, const char *detail)
{
	static TimestampTz last_logged = 0;
	TimestampTz now = GetCurrentTimestamp();

	pg_atomic_fetch_add_u64(&pk_redis->errors, 1);
	pk_redis_set_error("%s: %s", what, detail);
	if (TimestampDifferenceExceeds(last_logged, now, 10000))
	{
		last_logged = now;
		ereport(LOG,
				(errmsg("perfkit redis pusher: %s: %s", what, detail)));
	}
}

/* Text of a context's error; timeouts said plainly */
const char *
pk_redis_conn_error(redisContext *c)
{
	if (c == NULL)
		return "out of memory";
#if defined(HIREDIS_MAJOR) && HIREDIS_MAJOR >= 1
	if (c->err == REDIS_ERR_TIMEOUT)
		return "timed out";
#endif
	if (c->err == REDIS_ERR_IO && (errno == EAGAIN || errno == EWOULDBLOCK))
		return "timed out";
	return c->errstr[0] ? c->errstr : "connection error";
}

/* Drop the connection (if any) and schedule the next attempt */
void
pk_redis_disconnect(bool failed)
{
	if (pk_redis_conn != NULL)
		redisFree(pk_redis_conn);
	pk_redis_conn = NULL;
	pk_redis_set_connected(false);
	if (failed)
	{
		pk_backoff = pk_backoff == 0 ? PK_BACKOFF_MIN : Min(pk_backoff * 2, PK_BACKOFF_MAX);
		pk_redis_next_connect = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), pk_backoff);
	}
}

/* Run one command and return its reply (caller frees); NULL = connection dropped */
static redisReply *
pk_command(int argc, const char **argv, const size_t *lens, const char *what)
{
	redisReply *reply = redisCommandArgv(pk_redis_conn, argc, argv, lens);

	if (reply == NULL)
	{
		pk_redis_worker_error(what, pk_redis_conn_error(pk_redis_conn));
		pk_redis_disconnect(true);
	}
	return reply;
}

/* Run a command whose reply must not be an error; false when it failed */
static bool
pk_command_ok(int argc, const char **argv, const char *what)
{
	redisReply *reply = pk_command(argc, argv, NULL, what);
	bool		ok;

	if (reply == NULL)
		return false;
	ok = reply->type != REDIS_REPLY_ERROR;
	if (!ok)
	{
		pk_redis_worker_error(what, reply->str ? reply->str : "error");
		pk_redis_disconnect(true);
	}
	freeReplyObject(reply);
	return ok;
}

/* Connect, authenticate, select the database and check the server answers */
void
pk_redis_connect(const PkRedisUrl *url)
{
	struct timeval tv;
	char		db[16];

	tv.tv_sec = pk_redis_timeout / 1000;
	tv.tv_usec = (pk_redis_timeout % 1000) * 1000;
	pk_redis_conn = redisConnectWithTimeout(url->host, url->port, tv);
	if (pk_redis_conn == NULL || pk_redis_conn->err)
	{
		pk_redis_worker_error("cannot connect to Redis", pk_redis_conn_error(pk_redis_conn));
		pk_redis_disconnect(true);
		return;
	}
	if (redisSetTimeout(pk_redis_conn, tv) != REDIS_OK)
	{
		pk_redis_worker_error("cannot set the Redis timeout", pk_redis_conn_error(pk_redis_conn));
		pk_redis_disconnect(true);
		return;
	}
	(void) redisEnableKeepAlive(pk_redis_conn);

	if (url->password[0] != '\0')
	{
		const char *auth_user[] = {"AUTH", url->user, url->password};
		const char *auth[] = {"AUTH", url->password};

		if (!(url->user[0] ? pk_command_ok(3, auth_user, "Redis AUTH failed")
			  : pk_command_ok(2, auth, "Redis AUTH failed")))
			return;
	}
	snprintf(db, sizeof(db), "%d", url->db);
	{
		const char *select[] = {"SELECT", db};
		const char *ping[] = {"PING"};

		if ((url->db != 0 && !pk_command_ok(2, select, "Redis SELECT failed")) ||
			!pk_command_ok(1, ping, "Redis PING failed"))
			return;
	}
	pk_backoff = 0;
	pk_redis_last_reply = GetCurrentTimestamp();
	/*
	 * Redis may have lost its data (restart): void every recent mark before
	 * backends start capturing again, so that hot results are pushed anew
	 */
	pg_atomic_fetch_add_u32(&pk_redis->flush_epoch, 1);
	pk_redis_set_connected(true);
	ereport(LOG,
			(errmsg("perfkit redis pusher connected to %s:%d", url->host, url->port)));
}

/*
 * Check an idle connection: PING must be answered PONG within the timeout.
 * Otherwise the error is recorded and the connection dropped (false).
 */
bool
pk_redis_ping(void)
{
	const char *ping[] = {"PING"};
	redisReply *reply = pk_command(1, ping, NULL, "lost the Redis connection");
	char		detail[64] = "";

	if (reply == NULL)
		return false;			/* recorded and dropped by pk_command */
	if (reply->type == REDIS_REPLY_ERROR)
		strlcpy(detail, reply->str ? reply->str : "error", sizeof(detail));
	else if (reply->type != REDIS_REPLY_STATUS || reply->str == NULL ||
			 strcmp(reply->str, "PONG") != 0)
		strlcpy(detail, "unexpected reply to PING", sizeof(detail));
	freeReplyObject(reply);
	if (detail[0] != '\0')
	{
		pk_redis_worker_error("Redis PING failed", detail);
		pk_redis_disconnect(true);
		return false;
	}
	pk_redis_last_reply = GetCurrentTimestamp();
	return true;
}

/* Escape the glob characters of a SCAN pattern */
static void
pk_append_glob_escaped(StringInfo buf, const char *s)
{
	for (; *s; s++)
	{
		if (strchr("*?[]\\", *s) != NULL)
			appendStringInfoChar(buf, '\\');
		appendStringInfoChar(buf, *s);
	}
}

/* Delete every key matching pattern with SCAN + DEL; false when interrupted or failed */
static bool
pk_flush_pattern(const char *pattern)
{
	char		cursor[32] = "0";

	do
	{
		const char *scan[] = {"SCAN", cursor, "MATCH", pattern, "COUNT", "1000"};
		redisReply *reply;

		if (ShutdownRequestPending || pk_redis_conn == NULL)
			return false;
		reply = pk_command(6, scan, NULL, "Redis SCAN failed");
		if (reply == NULL)
			return false;
		if (reply->type != REDIS_REPLY_ARRAY || reply->elements != 2 ||
			reply->element[0]->type != REDIS_REPLY_STRING ||
			reply->element[1]->type != REDIS_REPLY_ARRAY)
		{
			freeReplyObject(reply);
			pk_redis_worker_error("Redis SCAN failed", "unexpected reply");
			pk_redis_disconnect(true);
			return false;
		}
		strlcpy(cursor, reply->element[0]->str, sizeof(cursor));
		if (reply->element[1]->elements > 0)
		{
			redisReply *keys = reply->element[1];
			const char **argv = palloc(sizeof(char *) * (keys->elements + 1));
			size_t	   *lens = palloc(sizeof(size_t) * (keys->elements + 1));
			redisReply *del;

			argv[0] = "DEL";
			lens[0] = 3;
			for (size_t i = 0; i < keys->elements; i++)
			{
				argv[i + 1] = keys->element[i]->str;
				lens[i + 1] = keys->element[i]->len;
			}
			del = pk_command(keys->elements + 1, argv, lens, "Redis DEL failed");
			if (del != NULL && del->type == REDIS_REPLY_INTEGER)
				pg_atomic_fetch_add_u64(&pk_redis->invalidated, del->integer);
			freeReplyObject(del);
			if (del == NULL)
			{
				freeReplyObject(reply);
				return false;
			}
		}
		freeReplyObject(reply);
	} while (strcmp(cursor, "0") != 0);
	return true;
}

/* Delete every pushed key and table set under the prefix, and announce it; true when done */
bool
pk_redis_flush(void)
{
	StringInfoData values;
	StringInfoData sets;
	char	   *channel = psprintf("%s:invalidate", pk_redis_prefix);
	const char *publish[] = {"PUBLISH", channel, "{\"flush\":true}"};

	initStringInfo(&values);
	pk_append_glob_escaped(&values, pk_redis_prefix);
	appendStringInfoString(&values, ":*");
	initStringInfo(&sets);
	pk_append_glob_escaped(&sets, pk_redis_prefix);
	appendStringInfoString(&sets, "#tables:*");
	if (!pk_flush_pattern(values.data) || !pk_flush_pattern(sets.data) ||
		!pk_command_ok(3, publish, "Redis PUBLISH failed"))
		return false;
	pg_atomic_fetch_add_u32(&pk_redis->flush_epoch, 1);
	return true;
}

/* Connect at the next occasion, without backoff (a new URL) */
void
pk_redis_reset_backoff(void)
{
	pk_backoff = 0;
	pk_redis_next_connect = 0;
}
