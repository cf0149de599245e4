package com.example.jobs

import java.time.Duration
import java.time.Instant

/** A job to run at a fixed interval. */
data class Job(val name: String, val every: Duration, val action: () -> Unit)

interface Clock {
    fun now(): Instant
}

/**
 * Runs jobs when they are due; the clock is injected so tests control time.
 */
class Scheduler(private val clock: Clock) {
    private val jobs = mutableListOf<Job>()
    private val lastRun = mutableMapOf<String, Instant>()

    fun register(job: Job) {
        require(jobs.none { it.name == job.name }) { "a job named ${job.name} exists" }
        jobs.add(job)
    }

    // Called by the timer loop once a second.
    fun tick(): List<String> {
        val now = clock.now()
        val ran = mutableListOf<String>()
        for (job in jobs) {
            val last = lastRun[job.name]
            if (last == null || Duration.between(last, now) >= job.every) {
                try {
                    job.action()
                } catch (e: Exception) {
                    println("job ${job.name} failed: ${e.message}")
                }
                lastRun[job.name] = now
                ran.add(job.name)
            }
        }
        return ran
    }

    @Synchronized
    fun unregister(name: String): Boolean {
        lastRun.remove(name)
        return jobs.removeIf { it.name == name }
    }

    companion object {
        fun systemClock(): Clock = object : Clock {
            override fun now(): Instant = Instant.now()
        }
    }
}

object Jobs {
    fun every(seconds: Long, name: String, action: () -> Unit) = Job(name, Duration.ofSeconds(seconds), action)
}

fun formatDuration(duration: Duration): String {
    val minutes = duration.toMinutes()
    val seconds = duration.minusMinutes(minutes).seconds
    return if (minutes > 0) "${minutes}m ${seconds}s" else "${seconds}s"
}
