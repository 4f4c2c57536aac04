/*-------------------------------------------------------------------------
 *
 * perfkit.c
 *	  Module entry point: calls each capability's init, sizes and attaches
 *	  shared memory, installs the statement hooks (hooks.c).
 *
 * perfkit must be loaded through shared_preload_libraries: its statistics
 * live in shared memory reserved at server start.  When the library is
 * loaded any other way, _PG_init does nothing, and every SQL function
 * raises the not-preloaded error (core.c).
 *
 * Capabilities are initialised in one order everywhere (settings, shared
 * memory, hooks): stats, slowlog, nplusone, advisor, redis, indexbuild.
 * Each capability's init defines its settings and installs what it needs
 * besides the statement hooks (the advisor's planner hooks, Redis's
 * transaction callbacks and pusher, the index-build launcher); the
 * statement hooks themselves are hooks.c's, which calls the capabilities in
 * the order its header gives.
 *
 * Shared memory is requested in the shmem_request hook and attached in the
 * shmem_startup hook, where the postmaster also loads the saved statistics
 * and registers the save-at-shutdown callback (stats_file.c).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "miscadmin.h"
#include "storage/ipc.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"
#include "utils/guc.h"

#include "advisor/advisor.h"
#include "core/core.h"
#include "hooks.h"
#include "indexbuild/indexbuild.h"
#include "nplusone/nplusone.h"
#include "redis/redis.h"
#include "slowlog/slowlog.h"
#include "stats/stats.h"

PG_MODULE_MAGIC;

static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

void		_PG_init(void);

/* Reserve every capability's shared memory and the LWLock tranche */
static void
pk_shmem_request(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	RequestAddinShmemSpace(pk_stats_shmem_size());
	RequestAddinShmemSpace(pk_slowlog_shmem_size());
	RequestAddinShmemSpace(pk_nplusone_shmem_size());
	RequestAddinShmemSpace(pk_advisor_shmem_size());
	RequestAddinShmemSpace(pk_redis_shmem_size());
	RequestAddinShmemSpace(pk_indexbuild_shmem_size());
	RequestNamedLWLockTranche("perfkit", PK_LOCK_COUNT);
}

/* Attach shared memory; in the postmaster, load saved stats and arrange saving */
static void
pk_shmem_startup(void)
{
	bool		existed;

	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();

	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	existed = pk_stats_shmem_init();
	pk_slowlog_shmem_init();
	pk_nplusone_shmem_init();
	pk_advisor_shmem_init();
	pk_redis_shmem_init();
	pk_indexbuild_shmem_init();
	LWLockRelease(AddinShmemInitLock);
	pk_shmem_attached = true;

	if (!IsUnderPostmaster)
	{
		on_shmem_exit(pk_statsfile_save, (Datum) 0);
		if (!existed)
			pk_statsfile_load();
	}
}

/* Module load: only effective from shared_preload_libraries */
void
_PG_init(void)
{
	if (!process_shared_preload_libraries_in_progress)
		return;

	pk_core_define_settings();
	pk_stats_init();
	pk_slowlog_init();
	pk_nplusone_init();
	pk_advisor_init();
	pk_redis_init();
	pk_indexbuild_init();
	MarkGUCPrefixReserved("perfkit");

	/* the fingerprint is the core query id: make sure it is computed */
	EnableQueryId();

	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = pk_shmem_request;
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = pk_shmem_startup;

	pk_install_statement_hooks();
}
