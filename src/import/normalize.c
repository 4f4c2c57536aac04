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
 * location) is replaced once.
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
 * Fill in the token length of each constant (sorted by location); -1 marks
 * a duplicate or a location the lexer never reached.
 */
static void
pk_measure_constants(LocationLen *locs, int nlocs, const char *source)
{
	core_yyscan_t scanner;
	core_yy_extra_type extra;
	core_YYSTYPE yylval;
	YYLTYPE		yylloc;
	int			last = -1;
	int			i = 0;

	scanner = scanner_init(source, &extra, &ScanKeywords, ScanKeywordTokens);
	/* constants come from successfully parsed text: no escape warnings needed */
	extra.escape_string_warning = false;

	while (i < nlocs)
	{
		int			tok = core_yylex(&yylval, &yylloc, scanner);

		if (tok == 0)
			break;
		/* skip duplicates and locations the lexer has passed */
		while (i < nlocs && (locs[i].location < yylloc || locs[i].location == last))
			locs[i++].length = -1;
		if (i >= nlocs)
			break;
		if (locs[i].location != yylloc)
			continue;

		if (tok == '-')
		{
			/* a negative number: the constant spans the sign and the number */
			tok = core_yylex(&yylval, &yylloc, scanner);
			if (tok == 0)
				break;
		}
		locs[i].length = yylloc + (int) strlen(extra.scanbuf + yylloc) - locs[i].location;
		last = locs[i].location;
		i++;
	}
	for (; i < nlocs; i++)
		locs[i].length = -1;

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
	int			next_param;
	int			copied;
	int			end;

	source = CleanQuerytext(source, &location, len);
	if (nlocs == 0)
		return pnstrdup(source, *len);

	/* CleanQuerytext moved source to the statement start: rebase the offsets */
	locs = palloc(sizeof(LocationLen) * nlocs);
	for (int i = 0; i < nlocs; i++)
	{
		locs[i].location = jstate->clocations[i].location - location;
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
	next_param = jstate->highest_extern_param_id + 1;
	copied = 0;
	end = *len;
	for (int i = 0; i < nlocs; i++)
	{
		int			off = locs[i].location;

		if (locs[i].length < 0 || off < copied || off + locs[i].length > end)
			continue;
		appendBinaryStringInfo(&buf, source + copied, off - copied);
		appendStringInfo(&buf, "$%d", next_param++);
		copied = off + locs[i].length;
	}
	appendBinaryStringInfo(&buf, source + copied, end - copied);
	pfree(locs);

	*len = buf.len;
	return buf.data;
}
