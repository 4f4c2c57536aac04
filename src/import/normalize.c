/*-------------------------------------------------------------------------
 *
 * normalize.c
 *	  Replace the constants of a statement's text with $n placeholders.
 *
 * The core query jumbler (the same code that computes the query id) records
 * where each constant it hashed starts in the source text, but not where it
 * ends.  We run the core SQL lexer over the statement once, in order, to
 * find each constant's token length, then copy the text with every
 * constant replaced by $n.  Numbering continues after the highest $n the
 * client already used, so "WHERE a = $1 AND b = 5" becomes
 * "WHERE a = $1 AND b = $2".  A constant the jumbler saw twice (the same
 * location) is replaced once.  This follows generate_normalized_query() of
 * pg_stat_statements of the same major, so both show the same text; what
 * changed between majors (squashed lists and client parameters on 18, the
 * numbering of placeholders) is in compat.h.
 *
 * This runs only when a statement's entry is created, never on the hot
 * path of an existing entry.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "common/keywords.h"
#include "lib/stringinfo.h"
#include "parser/scanner.h"

#include "core/compat.h"
#include "import/normalize.h"

/* qsort comparator: constant locations in text order */
static int
pk_compare_locations(const void *a, const void *b)
{
	int			la = ((const LocationLen *) a)->location;
	int			lb = ((const LocationLen *) b)->location;

	return (la > lb) - (la < lb);
}

/*
 * Fill in the token length of each constant of locs (sorted by location,
 * relative to source); a duplicate or a location the lexer never reached
 * keeps length -1.  Squashed lists (18) come with their length already.
 */
static void
pk_measure_constants(LocationLen *locs, int nlocs, const char *source)
{
	core_yyscan_t scanner;
	core_yy_extra_type extra;
	core_YYSTYPE yylval;
	YYLTYPE		yylloc;
	int			last_loc = -1;

	scanner = scanner_init(source, &extra, &ScanKeywords, ScanKeywordTokens);
	/* constants come from successfully parsed text: no escape warnings again */
	PK_SCANNER_QUIET(extra);

	for (int i = 0; i < nlocs; i++)
	{
		int			loc = locs[i].location;
		int			tok = 0;

		if (PK_LOC_SQUASHED(locs[i]))
			continue;			/* a squashed list: length known */
		if (loc <= last_loc)
			continue;			/* a duplicate */

		/* lex up to the constant (or past it, if the lexer skipped it) */
		for (;;)
		{
			tok = core_yylex(&yylval, &yylloc, scanner);
			if (tok == 0)
				break;
			if (yylloc >= loc)
			{
				/* a negative number: the constant spans the sign and the number */
				if (source[loc] == '-')
				{
					tok = core_yylex(&yylval, &yylloc, scanner);
					if (tok == 0)
						break;
				}
				/* the lexer put a NUL after the current token in its buffer */
				locs[i].length = (int) strlen(extra.scanbuf + loc);
				break;
			}
		}
		if (tok == 0)
			break;				/* end of text: the rest keep -1 */
		last_loc = loc;
	}

	scanner_finish(scanner);
}

/*
 * Normalized text of the statement at source[location .. location+*len],
 * palloc'd; *len is updated to its length.  Falls back to a plain copy when
 * the jumbler recorded no constants.
 */
char *
pk_normalize_query(const JumbleState *jstate, const char *source,
				   int location, int *len)
{
	StringInfoData buf;
	LocationLen *locs;
	int			nlocs = jstate ? jstate->clocations_count : 0;
	int			nreplaced = 0;
	int			copied = 0;
	int			end;

	source = CleanQuerytext(source, &location, len);
	if (nlocs == 0)
		return pnstrdup(source, *len);

	/*
	 * Our own copy, rebased on the statement start (CleanQuerytext moved
	 * source there): another module may already have sorted the jumbler's
	 * array and filled in lengths.  Only a squashed list's length is the
	 * jumbler's.
	 */
	locs = palloc(sizeof(LocationLen) * nlocs);
	memcpy(locs, jstate->clocations, sizeof(LocationLen) * nlocs);
	for (int i = 0; i < nlocs; i++)
	{
		locs[i].location -= location;
		if (!PK_LOC_SQUASHED(locs[i]))
			locs[i].length = -1;
	}
	qsort(locs, nlocs, sizeof(LocationLen), pk_compare_locations);

	{
		/* lex only our statement; the lexer needs a NUL-terminated copy */
		char	   *stmt = pnstrdup(source, *len);

		pk_measure_constants(locs, nlocs, stmt);
		pfree(stmt);
	}

	initStringInfo(&buf);
	end = *len;
	for (int i = 0; i < nlocs; i++)
	{
		int			off = locs[i].location;

		/* a client's $n stays as written unless lists were squashed (18) */
		if (PK_LOC_EXTERN_PARAM(locs[i]) && !PK_JUMBLE_HAS_SQUASHED(jstate))
			continue;
		if (locs[i].length < 0 || off < copied || off + locs[i].length > end)
			continue;
		appendBinaryStringInfo(&buf, source + copied, off - copied);
		appendStringInfo(&buf, "$%d%s",
						 PK_PLACEHOLDER_INDEX(i, nreplaced) + 1 + jstate->highest_extern_param_id,
						 PK_LOC_SQUASHED(locs[i]) ? " /*, ... */" : "");
		nreplaced++;
		copied = off + locs[i].length;
	}
	appendBinaryStringInfo(&buf, source + copied, end - copied);
	pfree(locs);

	*len = buf.len;
	return buf.data;
}
