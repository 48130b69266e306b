/*-------------------------------------------------------------------------
 *
 * wakeup.c
 *	  Wake the relay when a transaction that wrote events commits.
 *
 * Polling the outbox costs a transaction per poll whether or not anything
 * was written, and trades idle cost against the latency of the first event.
 * When the library is in shared_preload_libraries, a small shared-memory
 * area holds, per database slot, a commit counter and a condition variable:
 * a transaction that wrote at least one event bumps the counter of its
 * database and wakes the waiters when it commits (an XactCallback at
 * XACT_EVENT_COMMIT, which runs after the commit is visible).  The relay
 * waits with CALL taskevents.relay_wait(timeout_ms, commits): the
 * procedure first commits the CALL's own transaction, so the waiting
 * backend holds no snapshot and no transaction id (it does not hold back
 * vacuum), then sleeps until the counter differs from the one the relay
 * last saw, or the timeout passes.  Passing the counter back in closes the
 * race between a relay's last look at the outbox and its next wait.
 *
 * NOTIFY would do the same with a cluster-wide lock on every committing
 * writer; this costs a writer one atomic increment and a broadcast on the
 * condition variable.  Without the library preloaded there is no shared
 * memory: relay_wait() returns at once with a NULL counter and
 * relay_wakeup_mode() says 'poll', so the relay polls on its own clock.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "nodes/parsenodes.h"
#include "pgstat.h"
#include "port/atomics.h"
#include "storage/condition_variable.h"
#include "storage/ipc.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"
#include "utils/builtins.h"
#include "utils/wait_event.h"

#include "taskevents.h"

/* Databases share these slots by OID; a shared slot only wakes in vain. */
#define WAKEUP_SLOTS		32

/* Longest wait one call may ask for. */
#define WAKEUP_MAX_TIMEOUT_MS	60000

typedef struct WakeupSlot
{
	pg_atomic_uint64 commits;
	ConditionVariable cv;
} WakeupSlot;

static WakeupSlot *Slots = NULL;
static bool WroteEvents = false;

static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

static Size
WakeupShmemSize(void)
{
	return mul_size(WAKEUP_SLOTS, sizeof(WakeupSlot));
}

#if PG_VERSION_NUM >= 150000
static void
WakeupShmemRequest(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	RequestAddinShmemSpace(WakeupShmemSize());
}
#endif

static void
WakeupShmemStartup(void)
{
	bool		found;
	int			i;

	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();
	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	Slots = ShmemInitStruct("taskevents wakeup", WakeupShmemSize(), &found);
	if (!found)
	{
		for (i = 0; i < WAKEUP_SLOTS; i++)
		{
			pg_atomic_init_u64(&Slots[i].commits, 0);
			ConditionVariableInit(&Slots[i].cv);
		}
	}
	LWLockRelease(AddinShmemInitLock);
}

/*
 * At commit of a transaction that wrote events, bump its database's
 * counter and wake the relays waiting on it.
 */
static void
WakeupXactCallback(XactEvent event, void *arg)
{
	if (!WroteEvents)
		return;
	if (event == XACT_EVENT_COMMIT || event == XACT_EVENT_PARALLEL_COMMIT)
	{
		WakeupSlot *slot = &Slots[MyDatabaseId % WAKEUP_SLOTS];

		pg_atomic_fetch_add_u64(&slot->commits, 1);
		ConditionVariableBroadcast(&slot->cv);
		WroteEvents = false;
	}
	else if (event == XACT_EVENT_ABORT || event == XACT_EVENT_PARALLEL_ABORT ||
			 event == XACT_EVENT_PREPARE)
		WroteEvents = false;	/* a prepared one is seen by polling */
}

/*
 * Set up the shared memory and the commit callback.  Called from _PG_init;
 * the shared memory exists only when the library is preloaded.
 */
void
InitWakeup(void)
{
	if (!process_shared_preload_libraries_in_progress)
		return;
	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = WakeupShmemRequest;
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = WakeupShmemStartup;
}

/*
 * The current transaction wrote an event: wake the relay when it commits.
 */
void
NoteEventWritten(void)
{
	static bool registered = false;

	if (Slots == NULL || WroteEvents)
		return;
	if (!registered)
	{
		RegisterXactCallback(WakeupXactCallback, NULL);
		registered = true;
	}
	WroteEvents = true;
}

/*
 * taskevents.relay_wakeup_mode() RETURNS text
 *
 * 'latch' when commits wake the relay, 'poll' when the library is not in
 * shared_preload_libraries.
 */
PG_FUNCTION_INFO_V1(relay_wakeup_mode);
Datum
relay_wakeup_mode(PG_FUNCTION_ARGS)
{
	PG_RETURN_TEXT_P(cstring_to_text(Slots != NULL ? "latch" : "poll"));
}

/*
 * CALL taskevents.relay_wait(timeout_ms integer, INOUT commits bigint)
 *
 * See the file header.  Returns the database's commit counter, at once
 * when it differs from commits (or commits is NULL), else when a commit
 * bumps it or after timeout_ms; NULL in poll mode.
 */
PG_FUNCTION_INFO_V1(relay_wait);
Datum
relay_wait(PG_FUNCTION_ARGS)
{
	TupleDesc	desc;
	Datum		value;
	bool		isnull = false;
	int			timeout_ms;
	WakeupSlot *slot;
	uint64		seen;
	uint64		now;
	TimestampTz deadline;

	if (get_call_result_type(fcinfo, NULL, &desc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	timeout_ms = PG_ARGISNULL(0) ? 0 : PG_GETARG_INT32(0);
	if (timeout_ms < 0 || timeout_ms > WAKEUP_MAX_TIMEOUT_MS)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("timeout_ms must be between 0 and %d", WAKEUP_MAX_TIMEOUT_MS)));

	if (Slots == NULL)
	{
		isnull = true;
		value = (Datum) 0;
	}
	else
	{
		slot = &Slots[MyDatabaseId % WAKEUP_SLOTS];
		now = pg_atomic_read_u64(&slot->commits);
		if (!PG_ARGISNULL(1) && (uint64) PG_GETARG_INT64(1) == now && timeout_ms > 0)
		{
			/*
			 * End the CALL's transaction first, so that the wait holds no
			 * snapshot (it would hold back vacuum for its whole length).
			 */
			if (fcinfo->context == NULL || !IsA(fcinfo->context, CallContext) ||
				((CallContext *) fcinfo->context)->atomic)
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_TRANSACTION_STATE),
						 errmsg("relay_wait() must be called with CALL outside a transaction block"),
						 errhint("It ends its own transaction before it waits, so that the wait holds no snapshot.")));
			if (SPI_connect_ext(SPI_OPT_NONATOMIC) != SPI_OK_CONNECT)
				elog(ERROR, "SPI_connect failed");
			SPI_commit();
			SPI_finish();

			seen = now;
			deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), timeout_ms);
			ConditionVariablePrepareToSleep(&slot->cv);
			for (;;)
			{
				long		left;

				now = pg_atomic_read_u64(&slot->commits);
				if (now != seen)
					break;
				left = TimestampDifferenceMilliseconds(GetCurrentTimestamp(), deadline);
				if (left <= 0)
					break;
				(void) ConditionVariableTimedSleep(&slot->cv, left, PG_WAIT_EXTENSION);
			}
			ConditionVariableCancelSleep();
		}
		value = Int64GetDatum((int64) now);
	}
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(BlessTupleDesc(desc), &value, &isnull)));
}
