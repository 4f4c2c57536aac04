/*-------------------------------------------------------------------------
 *
 * indexbuild.h
 *	  Concurrent index builds requested from SQL (migrations), run by
 *	  background workers.
 *
 * A SQL function cannot run CREATE INDEX CONCURRENTLY, so
 * perfkit.create_index_concurrently() validates the request in the
 * caller's transaction and writes it as a row of
 * perfkit.index_build_requests: visible at COMMIT, gone at ROLLBACK.  At
 * commit the requesting backend wakes the launcher, which starts one
 * builder per database; the builder runs the statement at top level.
 *
 * Files: indexbuild.c (settings, shared memory, wake-up at commit, the
 * trusted requests table), indexbuild_request.c (validation, the request
 * row), indexbuild_shape.c (a statement's shape, adapted from DefineIndex),
 * indexbuild_funcs.c (SQL functions), indexbuild_launcher.c and
 * indexbuild_builder.c (background workers).
 *
 * Locking: the shared state and its per-database slots are protected by
 * one spinlock, held only to read or write a few fields.  Row-level state
 * lives in the requests table and follows transactional rules.  The
 * cancel hand-shake between a canceller and a builder is described in
 * indexbuild.c.
 *
 *-------------------------------------------------------------------------
 */
#ifndef PERFKIT_INDEXBUILD_H
#define PERFKIT_INDEXBUILD_H

#include "core/core.h"

extern void pk_indexbuild_init(void);
extern Size pk_indexbuild_shmem_size(void);
extern void pk_indexbuild_shmem_init(void);

#endif							/* PERFKIT_INDEXBUILD_H */
