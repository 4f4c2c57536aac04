/*-------------------------------------------------------------------------
 *
 * redis_json.c
 *	  Capture of a hot statement's result as JSON on its way to the client,
 *	  and the hash of the statement's text and parameters that names it.
 *
 * The value pushed to Redis is
 *	  {"columns":[{"name":"id","type":"integer"},...],
 *	   "rows":[[1,"a"],...],"row_count":2,
 *	   "queryid":"-123","generated_at":"2024-05-01T10:00:00.123456Z"}
 * Booleans, smallint, integer, oid, real and double precision are JSON
 * booleans and numbers (NaN and infinities as strings); bigint and
 * numeric are strings, so no digit is lost in JavaScript; json and jsonb
 * are embedded as JSON; dates and times are ISO 8601, timestamptz in UTC
 * with a "Z"; NULL is null; everything else is its text output, as a
 * string.  The format does not depend on DateStyle, TimeZone or
 * extra_float_digits.
 *
 * The capture is a DestReceiver in front of the statement's destination
 * (like the N+1 tap).  It writes the whole value into one buffer in a
 * child context of the execution's memory, so an error frees it with the
 * query; it stops copying as soon as the value would exceed
 * perfkit.redis_max_bytes, checking the size of a wide value before
 * detoasting it.  Rows always go on to the client unchanged.
 *
 * The key hash is the SHA-1 of the statement's text, followed for each
 * bind parameter by a NUL byte and the parameter's text output with every
 * backslash doubled ("\N" for NULL); see redis.c for what "the
 * statement's text" is.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>

#include "access/detoast.h"
#include "catalog/pg_type.h"
#include "common/cryptohash.h"
#include "common/hashfn.h"
#include "common/shortest_dec.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/datetime.h"
#include "utils/json.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "redis/redis_internal.h"

/* How a column is encoded */
#define PK_JSON_TEXT		0	/* text output as a JSON string */
#define PK_JSON_BOOL		1	/* true / false */
#define PK_JSON_INT			2	/* smallint, integer, oid: number */
#define PK_JSON_INT8		3	/* bigint: string */
#define PK_JSON_NUMERIC		4	/* numeric: string */
#define PK_JSON_FLOAT4		5	/* real: number */
#define PK_JSON_FLOAT8		6	/* double precision: number */
#define PK_JSON_DATETIME	7	/* date, time, timestamp: ISO string */
#define PK_JSON_RAW			8	/* json, jsonb: embedded */

/* The capture's DestReceiver */
typedef struct PkRedisTap
{
	DestReceiver pub;
	DestReceiver *inner;		/* the real destination */
	PkRedisCapture *cap;
} PkRedisTap;

/* A new capture for an execution, in a child context of its query memory */
PkRedisCapture *
pk_redis_capture_create(QueryDesc *queryDesc)
{
	MemoryContext cxt;
	MemoryContext old;
	PkRedisCapture *cap;

	cxt = AllocSetContextCreate(queryDesc->estate->es_query_cxt,
								"perfkit redis capture", ALLOCSET_DEFAULT_SIZES);
	old = MemoryContextSwitchTo(cxt);
	cap = palloc0(sizeof(PkRedisCapture));
	cap->queryDesc = queryDesc;
	cap->cxt = cxt;
	cap->valid = true;
	cap->max_bytes = pk_redis_max_bytes;
	initStringInfo(&cap->value);
	MemoryContextSwitchTo(old);
	return cap;
}

/* Give up on a capture and free its buffer */
static void
pk_capture_abandon(PkRedisCapture *cap, bool too_big)
{
	cap->valid = false;
	cap->too_big = too_big;
	if (cap->value.data != NULL)
		pfree(cap->value.data);
	cap->value.data = NULL;
	cap->value.len = cap->value.maxlen = 0;
}

/* The JSON kind of a (base) type */
static int
pk_json_kind(Oid type)
{
	switch (type)
	{
		case BOOLOID:
			return PK_JSON_BOOL;
		case INT2OID:
		case INT4OID:
		case OIDOID:
			return PK_JSON_INT;
		case INT8OID:
			return PK_JSON_INT8;
		case NUMERICOID:
			return PK_JSON_NUMERIC;
		case FLOAT4OID:
			return PK_JSON_FLOAT4;
		case FLOAT8OID:
			return PK_JSON_FLOAT8;
		case DATEOID:
		case TIMEOID:
		case TIMETZOID:
		case TIMESTAMPOID:
		case TIMESTAMPTZOID:
			return PK_JSON_DATETIME;
		case JSONOID:
		case JSONBOID:
			return PK_JSON_RAW;
		default:
			return PK_JSON_TEXT;
	}
}

/* Append a date/time value in ISO 8601; timestamptz in UTC with "Z" */
static void
pk_append_datetime(StringInfo out, Datum value, Oid type)
{
	char		buf[MAXDATELEN + 1];
	const int	utc = 0;
	int			len;

	JsonEncodeDateTime(buf, value, type, type == TIMESTAMPTZOID ? &utc : NULL);
	len = strlen(buf);
	if (type == TIMESTAMPTZOID && len > 6 && strcmp(buf + len - 6, "+00:00") == 0)
		strcpy(buf + len - 6, "Z");
	appendStringInfoChar(out, '"');
	appendStringInfoString(out, buf);
	appendStringInfoChar(out, '"');
}

/* Append a float as a JSON number, or a string for NaN and infinities */
static void
pk_append_float(StringInfo out, double v, bool single)
{
	char		buf[64];

	if (isnan(v))
		appendStringInfoString(out, "\"NaN\"");
	else if (isinf(v))
		appendStringInfoString(out, v > 0 ? "\"Infinity\"" : "\"-Infinity\"");
	else
	{
		if (single)
			float_to_shortest_decimal_buf((float) v, buf);
		else
			double_to_shortest_decimal_buf(v, buf);
		appendStringInfoString(out, buf);
	}
}

/* Append one value as JSON */
static void
pk_append_value(StringInfo out, PkRedisColumn *col, Datum value)
{
	switch (col->kind)
	{
		case PK_JSON_BOOL:
			appendStringInfoString(out, DatumGetBool(value) ? "true" : "false");
			break;
		case PK_JSON_INT:
			if (col->type == INT2OID)
				appendStringInfo(out, "%d", (int) DatumGetInt16(value));
			else if (col->type == INT4OID)
				appendStringInfo(out, "%d", DatumGetInt32(value));
			else
				appendStringInfo(out, "%u", DatumGetObjectId(value));
			break;
		case PK_JSON_INT8:
			appendStringInfo(out, "\"" INT64_FORMAT "\"", DatumGetInt64(value));
			break;
		case PK_JSON_FLOAT4:
			pk_append_float(out, DatumGetFloat4(value), true);
			break;
		case PK_JSON_FLOAT8:
			pk_append_float(out, DatumGetFloat8(value), false);
			break;
		case PK_JSON_DATETIME:
			pk_append_datetime(out, value, col->type);
			break;
		case PK_JSON_NUMERIC:
			{
				char	   *s = OutputFunctionCall(&col->out, value);

				appendStringInfo(out, "\"%s\"", s);
				pfree(s);
				break;
			}
		case PK_JSON_RAW:
			{
				char	   *s = OutputFunctionCall(&col->out, value);

				appendStringInfoString(out, s);
				pfree(s);
				break;
			}
		default:
			{
				char	   *s = OutputFunctionCall(&col->out, value);

				escape_json(out, s);
				pfree(s);
				break;
			}
	}
}

/* Tap: first run sets up the columns and starts the value; later runs void it */
static void
pk_tap_startup(DestReceiver *self, int operation, TupleDesc typeinfo)
{
	PkRedisTap *tap = (PkRedisTap *) self;
	PkRedisCapture *cap = tap->cap;

	/* a cursor fetched in several runs: not one complete result */
	if (++cap->runs > 1 && cap->valid)
		pk_capture_abandon(cap, false);

	if (cap->valid)
	{
		MemoryContext old = MemoryContextSwitchTo(cap->cxt);

		cap->natts = typeinfo->natts;
		cap->cols = palloc0(sizeof(PkRedisColumn) * Max(cap->natts, 1));
		appendStringInfoString(&cap->value, "{\"columns\":[");
		for (int i = 0; i < cap->natts; i++)
		{
			Form_pg_attribute attr = TupleDescAttr(typeinfo, i);
			PkRedisColumn *col = &cap->cols[i];
			Oid			outfunc;
			bool		varlena;

			col->type = getBaseType(attr->atttypid);
			col->kind = pk_json_kind(col->type);
			getTypeOutputInfo(attr->atttypid, &outfunc, &varlena);
			col->varlena = varlena;
			fmgr_info_cxt(outfunc, &col->out, cap->cxt);
			appendStringInfoString(&cap->value, i > 0 ? ",{\"name\":" : "{\"name\":");
			escape_json(&cap->value, NameStr(attr->attname));
			appendStringInfoString(&cap->value, ",\"type\":");
			escape_json(&cap->value, format_type_be(attr->atttypid));
			appendStringInfoChar(&cap->value, '}');
		}
		appendStringInfoString(&cap->value, "],\"rows\":[");
		MemoryContextSwitchTo(old);
	}
	tap->inner->rStartup(tap->inner, operation, typeinfo);
}

/* Tap: append the row while under the cap, then pass it on */
static bool
pk_tap_receive(TupleTableSlot *slot, DestReceiver *self)
{
	PkRedisTap *tap = (PkRedisTap *) self;
	PkRedisCapture *cap = tap->cap;

	if (cap->valid)
	{
		MemoryContext old = MemoryContextSwitchTo(cap->cxt);
		StringInfo	out = &cap->value;

		slot_getallattrs(slot);
		appendStringInfoString(out, cap->nrows > 0 ? ",[" : "[");
		for (int i = 0; i < cap->natts && cap->valid; i++)
		{
			PkRedisColumn *col = &cap->cols[i];
			Datum		value = slot->tts_values[i];

			if (i > 0)
				appendStringInfoChar(out, ',');
			if (slot->tts_isnull[i])
			{
				appendStringInfoString(out, "null");
				continue;
			}
			/* never detoast or print a value that cannot fit anyway */
			if (col->varlena &&
				(int64) toast_raw_datum_size(value) + out->len > cap->max_bytes)
				pk_capture_abandon(cap, true);
			else
				pk_append_value(out, col, value);
		}
		if (cap->valid)
		{
			appendStringInfoChar(out, ']');
			cap->nrows++;
			if (out->len > cap->max_bytes)
				pk_capture_abandon(cap, true);
		}
		MemoryContextSwitchTo(old);
	}
	return tap->inner->receiveSlot(slot, tap->inner);
}

/* Tap: forward shutdown */
static void
pk_tap_shutdown(DestReceiver *self)
{
	PkRedisTap *tap = (PkRedisTap *) self;

	tap->inner->rShutdown(tap->inner);
}

/* Tap: nothing to free, it lives in the query's memory */
static void
pk_tap_destroy(DestReceiver *self)
{
}

/* A tap that captures the rows of an execution into cap, wrapping queryDesc->dest */
DestReceiver *
pk_redis_capture_tap(PkRedisCapture *cap, QueryDesc *queryDesc)
{
	PkRedisTap *tap = MemoryContextAllocZero(cap->cxt, sizeof(PkRedisTap));

	tap->pub.receiveSlot = pk_tap_receive;
	tap->pub.rStartup = pk_tap_startup;
	tap->pub.rShutdown = pk_tap_shutdown;
	tap->pub.rDestroy = pk_tap_destroy;
	tap->pub.mydest = queryDesc->dest->mydest;
	tap->inner = queryDesc->dest;
	tap->cap = cap;
	return &tap->pub;
}

/*
 * End of a complete execution: finish the value and queue its push.  False
 * when nothing was queued (too big, queue full).
 */
bool
pk_redis_capture_finish(PkRedisCapture *cap, const char *datname)
{
	MemoryContext old;
	char		ts[MAXDATELEN + 1];
	const int	utc = 0;
	int			len;
	bool		queued;

	if (!cap->valid)
		return false;
	old = MemoryContextSwitchTo(cap->cxt);
	JsonEncodeDateTime(ts, TimestampTzGetDatum(GetCurrentTimestamp()), TIMESTAMPTZOID, &utc);
	len = strlen(ts);
	if (len > 6 && strcmp(ts + len - 6, "+00:00") == 0)
		strcpy(ts + len - 6, "Z");
	appendStringInfo(&cap->value,
					 "],\"row_count\":" UINT64_FORMAT ",\"queryid\":\"" INT64_FORMAT "\",\"generated_at\":\"%s\"}",
					 cap->nrows, (int64) cap->queryid, ts);
	MemoryContextSwitchTo(old);
	if (cap->value.len > cap->max_bytes)
	{
		pk_capture_abandon(cap, true);
		return false;
	}
	queued = pk_redis_enqueue_push(cap, datname, cap->value.data, cap->value.len);
	pk_capture_abandon(cap, false);
	return queued;
}

/* Feed s to the hash with every backslash doubled */
static void
pk_hash_escaped(pg_cryptohash_ctx *ctx, const char *s)
{
	const char *run = s;

	for (const char *p = s; *p != '\0'; p++)
	{
		if (*p == '\\')
		{
			pg_cryptohash_update(ctx, (const uint8 *) run, p - run + 1);
			run = p;			/* the backslash goes out once more */
		}
	}
	pg_cryptohash_update(ctx, (const uint8 *) run, strlen(run));
}

/*
 * Hex SHA-1 of a statement text and its parameters' text forms (hex must
 * hold 41 bytes).  params is either a ParamListInfo (from an execution) or
 * NULL; texts/nulls/ntexts give parameters already in text form.  False
 * when a parameter cannot be part of a key (too big, no type).
 */
static bool
pk_key_hash(const char *text, int len, ParamListInfo params,
			char **texts, int ntexts, char *hex)
{
	pg_cryptohash_ctx *ctx;
	uint8		digest[20];
	int			nparams = params != NULL ? params->numParams : ntexts;
	char	  **strs = nparams > 0 ? palloc0(sizeof(char *) * nparams) : NULL;
	bool		ok = true;

	/* text forms first: output functions may fail, the hash context must not leak */
	for (int i = 0; i < nparams && params != NULL; i++)
	{
		ParamExternData *prm = &params->params[i];
		Oid			outfunc;
		bool		varlena;

		if (prm->isnull)
			continue;
		if (!OidIsValid(prm->ptype))
			return false;
		getTypeOutputInfo(prm->ptype, &outfunc, &varlena);
		if (varlena && toast_raw_datum_size(prm->value) > PK_REDIS_PARAM_MAX)
			return false;
		strs[i] = OidOutputFunctionCall(outfunc, prm->value);
	}
	for (int i = 0; i < nparams && params == NULL; i++)
		strs[i] = texts[i];

	ctx = pg_cryptohash_create(PG_SHA1);
	if (ctx == NULL || pg_cryptohash_init(ctx) < 0 ||
		pg_cryptohash_update(ctx, (const uint8 *) text, len) < 0)
		ok = false;
	for (int i = 0; i < nparams && ok; i++)
	{
		pg_cryptohash_update(ctx, (const uint8 *) "", 1);
		if (strs[i] == NULL)
			pg_cryptohash_update(ctx, (const uint8 *) "\\N", 2);
		else
			pk_hash_escaped(ctx, strs[i]);
	}
	if (ok && pg_cryptohash_final(ctx, digest, sizeof(digest)) < 0)
		ok = false;
	pg_cryptohash_free(ctx);
	if (!ok)
		return false;
	hex_encode((const char *) digest, sizeof(digest), hex);
	hex[PK_REDIS_SHA1_HEX] = '\0';
	return true;
}

/*
 * A cheap 64-bit identity of (database, role, text, parameters) for the
 * "recently pushed" check of every hot execution: parameters are hashed in
 * their binary form (equal binary values have equal text forms), so no
 * output function and no SHA-1 runs on that path.  False when a parameter
 * cannot be part of a key.
 */
bool
pk_redis_ident(const char *text, int len, ParamListInfo params, uint64 *ident)
{
	uint64		h;
	uint64		seed[2] = {((uint64) MyDatabaseId << 32) | GetUserId(), (uint64) len};

	h = hash_bytes_extended((const unsigned char *) seed, sizeof(seed), 0);
	h = hash_bytes_extended((const unsigned char *) text, len, h);
	if (params != NULL && params->paramFetch != NULL)
		return false;			/* not client bind parameters */
	for (int i = 0; params != NULL && i < params->numParams; i++)
	{
		ParamExternData *prm = &params->params[i];
		int16		typlen;
		bool		typbyval;
		uint64		head[2] = {prm->ptype, prm->isnull};

		h = hash_bytes_extended((const unsigned char *) head, sizeof(head), h);
		if (prm->isnull)
			continue;
		if (!OidIsValid(prm->ptype))
			return false;
		get_typlenbyval(prm->ptype, &typlen, &typbyval);
		if (typbyval)
		{
			Datum		d = prm->value;

			h = hash_bytes_extended((const unsigned char *) &d, sizeof(d), h);
		}
		else if (typlen > 0)
			h = hash_bytes_extended((const unsigned char *) DatumGetPointer(prm->value), typlen, h);
		else if (typlen == -2)
			h = hash_bytes_extended((const unsigned char *) DatumGetCString(prm->value),
									strlen(DatumGetCString(prm->value)), h);
		else
		{
			struct varlena *v = (struct varlena *) DatumGetPointer(prm->value);

			/* wire parameters are plain; anything else is not worth a key */
			if (VARATT_IS_EXTENDED(v) && !VARATT_IS_SHORT(v))
				return false;
			if (VARSIZE_ANY_EXHDR(v) > PK_REDIS_PARAM_MAX)
				return false;
			h = hash_bytes_extended((const unsigned char *) VARDATA_ANY(v), VARSIZE_ANY_EXHDR(v), h);
		}
	}
	*ident = h | 1;
	return true;
}

/* Key hash of an execution: its statement text and its bind parameters */
bool
pk_redis_key_hash(const char *text, int len, ParamListInfo params, char *hex)
{
	if (params != NULL && params->paramFetch != NULL)
		return false;			/* not client bind parameters */
	return pk_key_hash(text, len, params, NULL, 0, hex);
}

/* Key hash of a text and parameters given as text (NULL elements: SQL NULL) */
bool
pk_redis_key_hash_texts(const char *text, int len, char **params, int nparams, char *hex)
{
	return pk_key_hash(text, len, NULL, params, nparams, hex);
}
