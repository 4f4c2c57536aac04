/*-------------------------------------------------------------------------
 *
 * normalize.h
 *	  Statement text with constants replaced by $n placeholders.
 *
 *-------------------------------------------------------------------------
 */
#ifndef PERFKIT_NORMALIZE_H
#define PERFKIT_NORMALIZE_H

#include "core/core.h"

extern char *pk_normalize_query(const JumbleState *jstate, const char *source,
								int location, int *len);

#endif							/* PERFKIT_NORMALIZE_H */
