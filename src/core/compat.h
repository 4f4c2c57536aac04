/*-------------------------------------------------------------------------
 *
 * compat.h
 *	  Every difference between the PostgreSQL majors perfkit supports.
 *
 * perfkit builds from one source tree against PostgreSQL 15 and later.
 * Every PG_VERSION_NUM test lives in this file and nowhere else: a version
 * difference becomes a macro or a static inline function named for what it
 * does, and the rest of the code calls that.  When a major changes an API,
 * add the shim here (newest form first) and say which major changed it.
 *
 *-------------------------------------------------------------------------
 */
#ifndef PERFKIT_COMPAT_H
#define PERFKIT_COMPAT_H

#include "postgres.h"

#if PG_VERSION_NUM < 150000
#error "perfkit requires PostgreSQL 15 or later"
#endif

/* The server's major times 100 (1500 for 15): the stats file records it, so another major's file is ignored */
#define PK_PG_MAJOR_X100	(PG_VERSION_NUM / 100)

/* 16 moved the query jumbler from utils/ to nodes/ */
#if PG_VERSION_NUM >= 160000
#include "nodes/queryjumble.h"
#else
#include "utils/queryjumble.h"
#endif

/* 16 replaced the per-kind ownership and ACL checks by object_* functions */
#if PG_VERSION_NUM >= 160000
#include "catalog/pg_class.h"
#include "catalog/pg_namespace.h"
#include "catalog/pg_tablespace.h"
#define pk_class_ownercheck(relid, roleid) \
	object_ownercheck(RelationRelationId, (relid), (roleid))
#define pk_namespace_aclcheck(nsp, roleid, mode) \
	object_aclcheck(NamespaceRelationId, (nsp), (roleid), (mode))
#define pk_tablespace_aclcheck(spc, roleid, mode) \
	object_aclcheck(TableSpaceRelationId, (spc), (roleid), (mode))
#else
#define pk_class_ownercheck(relid, roleid) pg_class_ownercheck((relid), (roleid))
#define pk_namespace_aclcheck(nsp, roleid, mode) \
	pg_namespace_aclcheck((nsp), (roleid), (mode))
#define pk_tablespace_aclcheck(spc, roleid, mode) \
	pg_tablespace_aclcheck((spc), (roleid), (mode))
#endif

/*
 * Memory of a GUC check hook's "extra": the GUC machinery frees it.  Up to
 * 15 it does so with free(), so it must come from malloc(); from 16 it is
 * freed with guc_free() (a pfree), so it must come from guc_malloc(): a
 * malloc'ed extra makes the next change of the setting fail with "pfree
 * called with invalid pointer" (at COMMIT when the change is
 * transactional).  NULL when out of memory, which the hook reports as false.
 */
#if PG_VERSION_NUM >= 160000
#define pk_guc_malloc(size)		guc_malloc(LOG, (size))
#define pk_guc_free(ptr)		guc_free(ptr)
#else
#define pk_guc_malloc(size)		malloc(size)
#define pk_guc_free(ptr)		free(ptr)
#endif

/* 17 moved the local transaction id of a PGPROC into its vxid */
#if PG_VERSION_NUM >= 170000
#define PK_MY_LXID			(MyProc->vxid.lxid)
#else
#define PK_MY_LXID			(MyProc->lxid)
#endif

#endif							/* PERFKIT_COMPAT_H */
