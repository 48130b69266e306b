/*-------------------------------------------------------------------------
 *
 * schedule.c
 *	  Recurrence and reminder hooks of the row trigger.
 *
 * The row trigger calls ScheduleAfterRowEvent() after it has written the
 * row's own event, so that whatever this file emits (the next instance of a
 * recurring task and its task.created, reminder.* events) follows it in the
 * outbox.  Until recurring tasks and reminders are implemented it does
 * nothing.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "taskevents.h"

/*
 * Define the taskevents.* settings of this file.  Called from _PG_init
 * before the prefix is reserved.
 */
void
DefineScheduleSettings(void)
{
}

/*
 * React to one row event of an attached table.
 */
void
ScheduleAfterRowEvent(TableConfig *cfg, TriggerData *trigdata,
					  TaskEventKind kind)
{
}
