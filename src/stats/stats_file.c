/*-------------------------------------------------------------------------
 *
 * stats_file.c
 *	  Save the statistics table at clean shutdown and load it at start.
 *
 * The postmaster writes pg_stat/perfkit.stat when it exits after a clean
 * shutdown (never after a crash or an immediate shutdown: processes killed
 * in the middle of an update may have left the table inconsistent; the
 * server's own cumulative statistics are discarded then too), to a
 * temporary name first and then durably renamed, so a crash while saving
 * leaves either the old file or none.  At start the postmaster reads the
 * file back before any backend exists, so no locks are needed, and removes
 * it, so that a later crash cannot resurrect stale figures.
 *
 * Format (native byte order, the same server build only):
 *	  header   magic, format version, server major version, histogram
 *			   buckets, size of PkCounters, entry count, stats_reset,
 *			   evictions
 *	  entries  key, counters, text length, text bytes
 *	  trailer  CRC-32C of everything before it
 * A file that is missing is silently skipped; one that is truncated, has a
 * bad checksum or was written by another version is ignored with a LOG
 * line; in every case the file is removed at start.  Write errors (a full
 * disk, a read-only directory) are logged, never raised, and leave no
 * temporary file.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "access/xlog_internal.h"
#include "catalog/pg_control.h"
#include "port/pg_crc32c.h"
#include "storage/fd.h"

#include "stats/stats_internal.h"

#define PK_STATS_FILE		"pg_stat/perfkit.stat"
#define PK_STATS_FILE_TMP	PK_STATS_FILE ".tmp"
#define PK_STATS_MAGIC		0x504B5354	/* "PKST" */
#define PK_STATS_FORMAT		1
#define PK_STATS_MAX_FILE	((off_t) 1024 * 1024 * 1024)

typedef struct PkFileHeader
{
	uint32		magic;
	uint32		format;
	uint32		server_major;
	uint32		hist_buckets;
	uint32		counters_size;
	int32		nentries;
	TimestampTz stats_reset;
	int64		evictions;
} PkFileHeader;

/* Write bytes and fold them into the running checksum; false on error */
static bool
pk_write(FILE *file, const void *data, size_t len, pg_crc32c *crc)
{
	COMP_CRC32C(*crc, data, len);
	return fwrite(data, 1, len, file) == len;
}

/*
 * Whether the server shut down cleanly: pg_control says so once the shutdown
 * checkpoint (or restartpoint, on a standby) was written.  An immediate
 * shutdown exits the postmaster with status 0 too, without that checkpoint.
 * Reads the file with plain system calls: no error may be raised here.
 */
static bool
pk_clean_shutdown(void)
{
	ControlFileData control;
	pg_crc32c	crc;
	ssize_t		n;
	int			fd;

	fd = open(XLOG_CONTROL_FILE, O_RDONLY | PG_BINARY, 0);
	if (fd < 0)
		return false;
	n = read(fd, &control, sizeof(control));
	close(fd);
	if (n != (ssize_t) sizeof(control))
		return false;
	INIT_CRC32C(crc);
	COMP_CRC32C(crc, &control, offsetof(ControlFileData, crc));
	FIN_CRC32C(crc);
	if (!EQ_CRC32C(crc, control.crc))
		return false;
	return control.state == DB_SHUTDOWNED || control.state == DB_SHUTDOWNED_IN_RECOVERY;
}

/* on_shmem_exit callback of the postmaster: save the table after a clean shutdown */
void
pk_statsfile_save(int code, Datum arg)
{
	FILE	   *file;
	PkFileHeader header;
	HASH_SEQ_STATUS hs;
	PkStatsEntry *entry;
	pg_crc32c	crc;
	bool		ok;

	/* after a crash the table may be inconsistent; when disabled, nothing to do */
	if (code != 0 || !pk_save || pk_state == NULL || pk_hash == NULL)
		return;
	/* likewise after an immediate shutdown */
	if (!pk_clean_shutdown())
		return;

	file = AllocateFile(PK_STATS_FILE_TMP, PG_BINARY_W);
	if (file == NULL)
	{
		ereport(LOG,
				(errcode_for_file_access(),
				 errmsg("could not write perfkit statistics file \"%s\": %m",
						PK_STATS_FILE_TMP)));
		return;
	}

	memset(&header, 0, sizeof(header));
	header.magic = PK_STATS_MAGIC;
	header.format = PK_STATS_FORMAT;
	header.server_major = PK_PG_MAJOR_X100;
	header.hist_buckets = PK_HIST_BUCKETS;
	header.counters_size = sizeof(PkCounters);
	header.nentries = (int32) hash_get_num_entries(pk_hash);
	header.stats_reset = pk_state->stats_reset;
	header.evictions = pk_state->evictions;

	INIT_CRC32C(crc);
	ok = pk_write(file, &header, sizeof(header), &crc);
	hash_seq_init(&hs, pk_hash);
	while ((entry = hash_seq_search(&hs)) != NULL)
	{
		int32		len = entry->query_len;

		if (ok)
			ok = pk_write(file, &entry->key, sizeof(PkStatsKey), &crc) &&
				pk_write(file, &entry->counters, sizeof(PkCounters), &crc) &&
				pk_write(file, &len, sizeof(len), &crc) &&
				pk_write(file, entry->query, len, &crc);
	}
	FIN_CRC32C(crc);
	if (ok)
		ok = fwrite(&crc, 1, sizeof(crc), file) == sizeof(crc);
	if (FreeFile(file) != 0)
		ok = false;

	if (!ok)
	{
		ereport(LOG,
				(errcode_for_file_access(),
				 errmsg("could not write perfkit statistics file \"%s\": %m",
						PK_STATS_FILE_TMP)));
		unlink(PK_STATS_FILE_TMP);
		return;
	}
	/* on failure (logged) leave no temporary file behind */
	if (durable_rename(PK_STATS_FILE_TMP, PK_STATS_FILE, LOG) != 0)
		unlink(PK_STATS_FILE_TMP);
}

/* Read the whole file into memory; NULL (logged) when impossible */
static char *
pk_read_file(off_t *size)
{
	FILE	   *file;
	struct stat st;
	char	   *buf;

	file = AllocateFile(PK_STATS_FILE, PG_BINARY_R);
	if (file == NULL)
	{
		if (errno != ENOENT)
			ereport(LOG,
					(errcode_for_file_access(),
					 errmsg("could not read perfkit statistics file \"%s\": %m",
							PK_STATS_FILE)));
		return NULL;
	}
	if (fstat(fileno(file), &st) != 0 || st.st_size > PK_STATS_MAX_FILE)
	{
		ereport(LOG,
				(errmsg("ignoring perfkit statistics file \"%s\": %s", PK_STATS_FILE,
						"cannot determine its size or it is too large")));
		FreeFile(file);
		return NULL;
	}
	buf = palloc_extended(st.st_size + 1, MCXT_ALLOC_HUGE | MCXT_ALLOC_NO_OOM);
	if (buf == NULL || fread(buf, 1, st.st_size, file) != (size_t) st.st_size)
	{
		ereport(LOG,
				(errcode_for_file_access(),
				 errmsg("could not read perfkit statistics file \"%s\": %m",
						PK_STATS_FILE)));
		if (buf)
			pfree(buf);
		FreeFile(file);
		return NULL;
	}
	FreeFile(file);
	*size = st.st_size;
	return buf;
}

/*
 * Walk the entries of a checked buffer.  With insert = false only verifies
 * that every entry lies inside the file; returns NULL when all is well,
 * otherwise why not.
 */
static const char *
pk_walk_entries(const char *buf, off_t end, int32 nentries, bool insert)
{
	off_t		pos = sizeof(PkFileHeader);

	for (int32 i = 0; i < nentries; i++)
	{
		PkStatsKey	key;
		int32		len;
		PkStatsEntry *entry;

		if (end - pos < (off_t) (sizeof(PkStatsKey) + sizeof(PkCounters) + sizeof(int32)))
			return "entry extends past the end of the file";
		memcpy(&key, buf + pos, sizeof(PkStatsKey));
		memcpy(&len, buf + pos + sizeof(PkStatsKey) + sizeof(PkCounters), sizeof(int32));
		if (len < 0 || end - pos - (off_t) (sizeof(PkStatsKey) + sizeof(PkCounters) + sizeof(int32)) < len)
			return "query text extends past the end of the file";
		if (insert)
		{
			entry = pk_stats_insert_locked(&key,
										   buf + pos + sizeof(PkStatsKey) + sizeof(PkCounters) + sizeof(int32),
										   len,
										   0 /* the saved counters follow */);
			if (entry == NULL)
				break;			/* the table is smaller than it was */
			memcpy(&entry->counters, buf + pos + sizeof(PkStatsKey), sizeof(PkCounters));
		}
		pos += sizeof(PkStatsKey) + sizeof(PkCounters) + sizeof(int32) + len;
	}
	if (!insert && pos != end)
		return "unexpected data after the last entry";
	return NULL;
}

/*
 * Load the saved table; called by the postmaster when the shared memory
 * was just created.  The file is removed afterwards in every case.
 */
void
pk_statsfile_load(void)
{
	char	   *buf;
	off_t		size;
	const char *problem = NULL;
	PkFileHeader header;
	pg_crc32c	crc;
	pg_crc32c	stored;

	buf = pk_read_file(&size);
	if (buf == NULL)
	{
		/*
		 * Missing, or unreadable or too large (logged): remove it anyway, so
		 * that it can neither come back after a crash nor make the rename of
		 * the next save fail (durable_rename opens an existing target).
		 */
		unlink(PK_STATS_FILE);
		return;
	}

	if (size < (off_t) (sizeof(PkFileHeader) + sizeof(pg_crc32c)))
		problem = "file is too short";
	else
	{
		memcpy(&header, buf, sizeof(header));
		memcpy(&stored, buf + size - sizeof(pg_crc32c), sizeof(pg_crc32c));
		INIT_CRC32C(crc);
		COMP_CRC32C(crc, buf, size - sizeof(pg_crc32c));
		FIN_CRC32C(crc);

		if (header.magic != PK_STATS_MAGIC)
			problem = "not a perfkit statistics file";
		else if (header.server_major != PK_PG_MAJOR_X100)
			problem = psprintf("written by PostgreSQL %u, this server is %u",
							   header.server_major / 100, PK_PG_MAJOR_X100 / 100);
		else if (header.format != PK_STATS_FORMAT ||
				 header.hist_buckets != PK_HIST_BUCKETS ||
				 header.counters_size != sizeof(PkCounters))
			problem = "written by another version of perfkit or of the server";
		else if (!EQ_CRC32C(crc, stored))
			problem = "checksum mismatch";
		else if (header.nentries < 0)
			problem = "invalid entry count";
		else
			problem = pk_walk_entries(buf, size - sizeof(pg_crc32c), header.nentries, false);
	}

	if (problem != NULL)
		ereport(LOG,
				(errmsg("ignoring perfkit statistics file \"%s\": %s",
						PK_STATS_FILE, problem)));
	else
	{
		(void) pk_walk_entries(buf, size - sizeof(pg_crc32c), header.nentries, true);
		pk_state->stats_reset = header.stats_reset;
		pk_state->evictions = header.evictions;
	}

	pfree(buf);
	unlink(PK_STATS_FILE);
}
