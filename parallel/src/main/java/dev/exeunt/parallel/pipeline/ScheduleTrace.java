package dev.exeunt.parallel.pipeline;

import dev.exeunt.parallel.comm.ProcessGroup;
import dev.exeunt.tensor.DType;
import dev.exeunt.tensor.Device;
import dev.exeunt.tensor.Tensor;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;

/**
 * The timeline of one training step on one pipeline stage ({@code --trace-schedule FILE}): each forward,
 * backward (its exits' part apart), receive wait and the final wait for sends, in microseconds from the
 * step's start (a barrier over the stages, so the stages' clocks line up to its skew). Gaps are idle time.
 * {@link #write} gathers every stage's events on stage 0 and writes them as Chrome trace JSON (one row per
 * stage), which chrome://tracing and Perfetto open.
 */
public final class ScheduleTrace {
    /** What an event was. */
    public enum Kind {
        FORWARD, BACKWARD, EXIT, FILL_FORWARD, FILL_BACKWARD, FILL_EXIT, RECV, SEND_WAIT;

        String label() {
            return name().toLowerCase(Locale.ROOT).replace('_', ' ');
        }
    }

    /** One event: its kind, its micro-batch (-1 for none) and its span in microseconds from the step's start. */
    public record Event(Kind kind, int micro, double startMicros, double endMicros) {}

    private static final int TAG = (1 << 30) + 7; // apart from activations, gradients and checkpoint streams
    private final long origin;
    private final List<Event> events = new ArrayList<>();

    /** Starts the timeline now: call it on every stage right after a barrier. */
    public ScheduleTrace() {
        this.origin = System.nanoTime();
    }

    /** Records an event that ran from {@code startNanos} to now ({@link System#nanoTime()}). */
    public void add(Kind kind, int micro, long startNanos) {
        add(kind, micro, startNanos, System.nanoTime());
    }

    public void add(Kind kind, int micro, long startNanos, long endNanos) {
        events.add(new Event(kind, micro, (startNanos - origin) / 1e3, (endNanos - origin) / 1e3));
    }

    public List<Event> events() {
        return events;
    }

    /**
     * Collective over {@code pp}: every stage sends its events to stage 0, which writes {@code file}.
     */
    public static void write(ProcessGroup pp, ScheduleTrace mine, Path file) throws IOException {
        if (pp.rank() != 0) {
            try (Tensor packed = pack(mine.events); Tensor n = Tensor.of(new float[] {mine.events.size()}, 1)) {
                pp.send(n, 0, TAG);
                if (!mine.events.isEmpty()) pp.send(packed, 0, TAG);
            }
            return;
        }
        List<List<Event>> all = new ArrayList<>();
        all.add(mine.events);
        for (int s = 1; s < pp.size(); s++) {
            try (Tensor n = Tensor.empty(DType.F32, Device.CPU, 1)) {
                pp.recv(n, s, TAG);
                int count = (int) n.toFloatArray()[0];
                List<Event> theirs = new ArrayList<>();
                if (count > 0) {
                    try (Tensor packed = Tensor.empty(DType.F32, Device.CPU, count, 4)) {
                        pp.recv(packed, s, TAG);
                        float[] v = packed.toFloatArray();
                        for (int i = 0; i < count; i++) theirs.add(new Event(Kind.values()[(int) v[4 * i]], (int) v[4 * i + 1], v[4 * i + 2], v[4 * i + 3]));
                    }
                }
                all.add(theirs);
            }
        }
        Files.writeString(file, chromeJson(all), StandardCharsets.UTF_8);
    }

    private static Tensor pack(List<Event> events) {
        float[] v = new float[Math.max(1, events.size()) * 4];
        for (int i = 0; i < events.size(); i++) {
            Event e = events.get(i);
            v[4 * i] = e.kind().ordinal();
            v[4 * i + 1] = e.micro();
            v[4 * i + 2] = (float) e.startMicros();
            v[4 * i + 3] = (float) e.endMicros();
        }
        return Tensor.of(v, v.length / 4, 4);
    }

    /** Chrome's trace event format: complete ("X") events, one thread row per stage. */
    static String chromeJson(List<List<Event>> stages) {
        var sb = new StringBuilder("{\"displayTimeUnit\":\"ms\",\"traceEvents\":[");
        boolean first = true;
        for (int s = 0; s < stages.size(); s++) {
            sb.append(first ? "" : ",").append(String.format(Locale.ROOT,
                    "{\"name\":\"thread_name\",\"ph\":\"M\",\"pid\":0,\"tid\":%d,\"args\":{\"name\":\"stage %d\"}}", s, s));
            first = false;
            for (Event e : stages.get(s)) {
                String name = e.kind().label() + (e.micro() >= 0 ? " " + e.micro() : "");
                sb.append(String.format(Locale.ROOT, ",{\"name\":\"%s\",\"cat\":\"%s\",\"ph\":\"X\",\"pid\":0,\"tid\":%d,\"ts\":%.1f,\"dur\":%.1f}",
                        name, e.kind().label(), s, e.startMicros(), Math.max(0, e.endMicros() - e.startMicros())));
            }
        }
        return sb.append("]}\n").toString();
    }
}
