/*-------------------------------------------------------------------------
 *
 * perfkit.c
 *	  Module entry point: settings, shared memory, hook registration.
 *
 * perfkit must be loaded through shared_preload_libraries: its statistics
 * live in shared memory reserved at server start.  When the library is
 * loaded any other way, _PG_init does nothing, and every SQL function
 * raises an error saying how to preload it (stats.c).
 *
 * Shared memory is requested in the shmem_request hook (PostgreSQL 15 and
 * later; directly from _PG_init before that) and attached in the
 * shmem_startup hook, where the postmaster also loads the saved statistics
 * and registers the save-at-shutdown callback (statsfile.c).
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
#include "indexbuild/indexbuild.h"
#include "nplusone/nplusone.h"
#include "redis/redis.h"
#include "slowlog/slowlog.h"
#include "stats/stats.h"

PG_MODULE_MAGIC;

/* Settings */
bool		pk_enabled = true;
int			pk_track = PK_TRACK_TOP;
bool		pk_track_utility = true;
bool		pk_save = true;
int			pk_max_statements = 5000;
int			pk_max_query_length = 2048;
int			pk_slow_threshold = 1000;
int			pk_slow_max = 100;
bool		pk_slow_log = false;
bool		pk_slow_analyze = false;
int			pk_slow_params_max_length = 256;
bool		pk_nplus_enabled = true;
int			pk_nplus_min_repeats = 5;
int			pk_nplus_max_gap = 500;
int			pk_nplus_log_level = LOG;
int			pk_nplus_max_patterns = 1000;

static const struct config_enum_entry pk_log_level_options[] = {
	{"debug5", DEBUG5, false},
	{"debug4", DEBUG4, false},
	{"debug3", DEBUG3, false},
	{"debug2", DEBUG2, false},
	{"debug1", DEBUG1, false},
	{"debug", DEBUG2, true},
	{"info", INFO, false},
	{"notice", NOTICE, false},
	{"warning", WARNING, false},
	{"log", LOG, false},
	{NULL, 0, false}
};

static const struct config_enum_entry pk_track_options[] = {
	{"none", PK_TRACK_NONE, false},
	{"top", PK_TRACK_TOP, false},
	{"all", PK_TRACK_ALL, false},
	{NULL, 0, false}
};

#if PG_VERSION_NUM >= 150000
static shmem_request_hook_type prev_shmem_request_hook = NULL;
#endif
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

void		_PG_init(void);

/* Register the perfkit.* settings */
static void
pk_define_settings(void)
{
	DefineCustomBoolVariable("perfkit.enabled",
							 "Records statement statistics when on.",
							 NULL, &pk_enabled, true,
							 PGC_SUSET, 0, NULL, NULL, NULL);
	DefineCustomEnumVariable("perfkit.track",
							 "Selects which statements are recorded: top (sent by clients), all (also inside functions) or none.",
							 NULL, &pk_track, PK_TRACK_TOP, pk_track_options,
							 PGC_SUSET, 0, NULL, NULL, NULL);
	DefineCustomBoolVariable("perfkit.track_utility",
							 "Records utility statements (DDL, COPY, VACUUM, ...) too.",
							 NULL, &pk_track_utility, true,
							 PGC_SUSET, 0, NULL, NULL, NULL);
	DefineCustomBoolVariable("perfkit.save",
							 "Saves the statistics at clean shutdown and reloads them at start.",
							 NULL, &pk_save, true,
							 PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("perfkit.max_statements",
							"Maximum number of statements tracked; the least used are evicted beyond it.",
							NULL, &pk_max_statements, 5000, 100, INT_MAX / 2,
							PGC_POSTMASTER, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("perfkit.max_query_length",
							"Bytes of normalized statement text kept per statement; longer texts are truncated.",
							NULL, &pk_max_query_length, 2048, 64, 1024 * 1024,
							PGC_POSTMASTER, GUC_UNIT_BYTE, NULL, NULL, NULL);
	DefineCustomIntVariable("perfkit.slow_threshold",
							"Executions at or above this duration are captured as slow queries; -1 disables.",
							NULL, &pk_slow_threshold, 1000, -1, INT_MAX,
							PGC_SUSET, GUC_UNIT_MS, NULL, NULL, NULL);
	DefineCustomIntVariable("perfkit.slow_max",
							"Number of slow executions kept in the shared ring; the oldest are overwritten.",
							NULL, &pk_slow_max, 100, 0, 10000,
							PGC_POSTMASTER, 0, NULL, NULL, NULL);
	DefineCustomBoolVariable("perfkit.slow_log",
							 "Also writes each slow execution to the server log, as auto_explain does.",
							 NULL, &pk_slow_log, false,
							 PGC_SUSET, 0, NULL, NULL, NULL);
	DefineCustomBoolVariable("perfkit.slow_analyze",
							 "Instruments every plan node so that slow plans show actual rows and times (costs throughput).",
							 NULL, &pk_slow_analyze, false,
							 PGC_SUSET, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("perfkit.slow_params_max_length",
							"Bytes kept of each bind parameter value of a slow execution; 0 keeps none, -1 keeps them whole.",
							NULL, &pk_slow_params_max_length, 256, -1, PK_SLOW_PARAMS_MAX,
							PGC_SUSET, GUC_UNIT_BYTE, NULL, NULL, NULL);
	DefineCustomBoolVariable("perfkit.nplusone",
							 "Detects N+1 loops and repeated identical statements.",
							 NULL, &pk_nplus_enabled, true,
							 PGC_SUSET, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("perfkit.nplusone_min_repeats",
							"Executions of the same statement after a parent that make a loop.",
							NULL, &pk_nplus_min_repeats, 5, 2, INT_MAX,
							PGC_SUSET, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("perfkit.nplusone_max_gap",
							"Longest pause between two steps of a loop outside a transaction block.",
							NULL, &pk_nplus_max_gap, 500, 0, INT_MAX,
							PGC_SUSET, GUC_UNIT_MS, NULL, NULL, NULL);
	DefineCustomEnumVariable("perfkit.nplusone_log_level",
							 "Log level of the server-log line written when a new pattern is detected.",
							 NULL, &pk_nplus_log_level, LOG, pk_log_level_options,
							 PGC_SUSET, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("perfkit.nplusone_max_patterns",
							"Number of N+1 patterns kept; the one seen longest ago makes room for a new one.",
							NULL, &pk_nplus_max_patterns, 1000, 10, 1000000,
							PGC_POSTMASTER, 0, NULL, NULL, NULL);
	pk_indexbuild_define_settings();
	pk_redis_define_settings();
	pk_advisor_define_settings();
	MarkGUCPrefixReserved("perfkit");
}

/* Reserve shared memory and the LWLock */
static void
pk_shmem_request(void)
{
#if PG_VERSION_NUM >= 150000
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
#endif
	RequestAddinShmemSpace(add_size(pk_stats_shmem_size(), pk_slowlog_shmem_size()));
	RequestAddinShmemSpace(pk_indexbuild_shmem_size());
	RequestAddinShmemSpace(pk_nplus_shmem_size());
	RequestAddinShmemSpace(pk_redis_shmem_size());
	RequestAddinShmemSpace(pk_advisor_shmem_size());
	/* [0] statistics table, [1] slow-query ring, [2] N+1 patterns, [3] index advisor */
	RequestNamedLWLockTranche("perfkit", 4);
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
	pk_nplus_shmem_init();
	pk_redis_shmem_init();
	pk_indexbuild_shmem_init();
	pk_advisor_shmem_init();
	LWLockRelease(AddinShmemInitLock);

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

	pk_define_settings();

	/* the fingerprint is the core query id: make sure it is computed */
	EnableQueryId();

#if PG_VERSION_NUM >= 150000
	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = pk_shmem_request;
#else
	pk_shmem_request();
#endif
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = pk_shmem_startup;

	pk_install_executor_hooks();
	pk_whatif_install_hook();
	pk_redis_init();
	pk_indexbuild_register_workers();
}
