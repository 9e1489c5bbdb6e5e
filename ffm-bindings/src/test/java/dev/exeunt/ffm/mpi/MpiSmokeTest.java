package dev.exeunt.ffm.mpi;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/**
 * Open MPI as a singleton (one process, no mpirun). MPI_Init may run once per process, so every MPI test lives in
 * this class: init in {@link #init()}, finalize in {@link #finish()}. Under mpirun with several ranks the same
 * checks hold with {@code size} ranks.
 */
class MpiSmokeTest {

    private static int rank;
    private static int size;

    @BeforeAll
    static void init() {
        assumeTrue(Mpi.isAvailable(), Mpi::unavailableReason);
        int[] version = Mpi.version(); // allowed before MPI_Init
        assertTrue(version[0] >= 3, "MPI " + version[0] + "." + version[1]);
        try {
            Mpi.init();
        } catch (MpiException e) {
            assumeTrue(false, "MPI singleton init failed here: " + e.getMessage());
        }
        assertTrue(Mpi.isInitialized());
        rank = Mpi.rank(Mpi.COMM_WORLD());
        size = Mpi.size(Mpi.COMM_WORLD());
        System.out.println("MPI " + version[0] + "." + version[1] + " rank " + rank + "/" + size + " on " + Mpi.processorName());
    }

    @AfterAll
    static void finish() {
        if (Mpi.isAvailable() && Mpi.isInitialized()) {
            Mpi.finalizeMpi();
            assertTrue(Mpi.isFinalized());
        }
    }

    @Test
    void rankAndSize() {
        assertTrue(size >= 1);
        assertTrue(rank >= 0 && rank < size);
        assertEquals(0, Mpi.rank(Mpi.COMM_SELF()));
        assertEquals(1, Mpi.size(Mpi.COMM_SELF()));
        double t0 = Mpi.wtime();
        double t1 = Mpi.wtime();
        assertTrue(t1 >= t0, t0 + " then " + t1);
    }

    @Test
    void allreduceSumsFloats() {
        float[] values = {1f, 2.5f, -3f, 1e-3f, 42f};
        float[] sum = Mpi.allreduceSum(values, Mpi.COMM_WORLD());
        for (int i = 0; i < values.length; i++) {
            assertEquals(values[i] * size, sum[i], 1e-5f * size * Math.max(1f, Math.abs(values[i])));
        }
    }

    @Test
    void allreduceInPlaceAndMax() {
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment buf = arena.allocateFrom(ValueLayout.JAVA_INT, 7, rank, -1);
            Mpi.allreduce(MpiHandles.MPI_IN_PLACE(), buf, 3, Mpi.INT(), Mpi.MAX(), Mpi.COMM_WORLD());
            assertArrayEquals(new int[] {7, size - 1, -1}, buf.toArray(ValueLayout.JAVA_INT));
        }
    }

    @Test
    void allgatherBcastAndReduceScatter() {
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment mine = arena.allocateFrom(ValueLayout.JAVA_DOUBLE, rank + 0.5, -rank);
            MemorySegment all = arena.allocate(ValueLayout.JAVA_DOUBLE, 2L * size);
            Mpi.allgather(mine, 2, Mpi.DOUBLE(), all, 2, Mpi.DOUBLE(), Mpi.COMM_WORLD());
            for (int r = 0; r < size; r++) {
                assertEquals(r + 0.5, all.getAtIndex(ValueLayout.JAVA_DOUBLE, 2L * r));
                assertEquals(-r, all.getAtIndex(ValueLayout.JAVA_DOUBLE, 2L * r + 1));
            }

            MemorySegment bytes = arena.allocate(16);
            if (rank == 0) {
                for (int i = 0; i < 16; i++) {
                    bytes.set(ValueLayout.JAVA_BYTE, i, (byte) (i * 3));
                }
            }
            Mpi.bcast(bytes, 16, Mpi.BYTE(), 0, Mpi.COMM_WORLD());
            for (int i = 0; i < 16; i++) {
                assertEquals((byte) (i * 3), bytes.get(ValueLayout.JAVA_BYTE, i));
            }

            int per = 3;
            MemorySegment send = arena.allocate(ValueLayout.JAVA_FLOAT, (long) per * size);
            for (int i = 0; i < per * size; i++) {
                send.setAtIndex(ValueLayout.JAVA_FLOAT, i, i);
            }
            MemorySegment recv = arena.allocate(ValueLayout.JAVA_FLOAT, per);
            Mpi.reduceScatterBlock(send, recv, per, Mpi.FLOAT(), Mpi.SUM(), Mpi.COMM_WORLD());
            for (int i = 0; i < per; i++) {
                assertEquals((float) (rank * per + i) * size, recv.getAtIndex(ValueLayout.JAVA_FLOAT, i));
            }
        }
    }

    @Test
    void nonblockingCollectivesCompleteThroughTest() {
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment sum = arena.allocateFrom(ValueLayout.JAVA_FLOAT, 1.5f, -2f);
            MemorySegment bytes = arena.allocateFrom(ValueLayout.JAVA_BYTE, (byte) -3, (byte) rank);
            MemorySegment flag = arena.allocate(ValueLayout.JAVA_INT);
            MemorySegment r1 = arena.allocate(ValueLayout.ADDRESS);
            MemorySegment r2 = arena.allocate(ValueLayout.ADDRESS);
            MemorySegment r3 = arena.allocate(ValueLayout.ADDRESS);
            Mpi.iallreduce(MpiHandles.MPI_IN_PLACE(), sum, 2, Mpi.FLOAT(), Mpi.SUM(), Mpi.COMM_WORLD(), r1);
            Mpi.iallreduce(MpiHandles.MPI_IN_PLACE(), bytes, 2, Mpi.INT8(), Mpi.MAX(), Mpi.COMM_WORLD(), r2);
            Mpi.ibarrier(Mpi.COMM_WORLD(), r3);
            for (MemorySegment r : new MemorySegment[] {r1, r2, r3}) {
                while (!Mpi.test(r, flag, MpiHandles.MPI_STATUS_IGNORE())) {
                    Thread.onSpinWait();
                }
                assertEquals(MpiHandles.MPI_REQUEST_NULL().address(), r.get(ValueLayout.ADDRESS, 0).address());
            }
            assertArrayEquals(new float[] {1.5f * size, -2f * size}, sum.toArray(ValueLayout.JAVA_FLOAT));
            assertArrayEquals(new byte[] {-3, (byte) (size - 1)}, bytes.toArray(ValueLayout.JAVA_BYTE));
        }
    }

    @Test
    void pointToPointWithSelfAndStatus() {
        MemorySegment self = Mpi.COMM_SELF();
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment out = arena.allocateFrom(ValueLayout.JAVA_FLOAT, 1f, 2f, 3f);
            MemorySegment in = arena.allocate(ValueLayout.JAVA_FLOAT, 3);
            MemorySegment recvReq = Mpi.irecv(in, 3, Mpi.FLOAT(), 0, 17, self, arena);
            MemorySegment sendReq = Mpi.isend(out, 3, Mpi.FLOAT(), 0, 17, self, arena);
            MemorySegment status = MPI_Status.allocate(arena);
            Mpi.await(sendReq, MpiHandles.MPI_STATUS_IGNORE());
            Mpi.await(recvReq, status);
            assertArrayEquals(new float[] {1f, 2f, 3f}, in.toArray(ValueLayout.JAVA_FLOAT));
            assertEquals(0, MPI_Status.MPI_SOURCE(status));
            assertEquals(17, MPI_Status.MPI_TAG(status));
            assertEquals(MpiHandles.MPI_REQUEST_NULL().address(), recvReq.get(ValueLayout.ADDRESS, 0).address());

            MemorySegment back = arena.allocate(ValueLayout.JAVA_FLOAT, 3);
            Mpi.sendrecv(out, 3, Mpi.FLOAT(), 0, 5, back, 3, Mpi.FLOAT(), 0, 5, self, MpiHandles.MPI_STATUS_IGNORE());
            assertArrayEquals(new float[] {1f, 2f, 3f}, back.toArray(ValueLayout.JAVA_FLOAT));
        }
    }

    @Test
    void splitAndBarrier() {
        MemorySegment sub = Mpi.split(Mpi.COMM_WORLD(), rank % 2, rank);
        assertFalse(sub.address() == MpiHandles.MPI_COMM_NULL().address());
        assertEquals((size - rank % 2 + 1) / 2, Mpi.size(sub));
        Mpi.barrier(sub);
        Mpi.commFree(sub);
        Mpi.barrier(Mpi.COMM_WORLD());
    }

    @Test
    void errorsBecomeExceptionsWithMpisText() {
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment buf = arena.allocate(4);
            MpiException e = assertThrows(MpiException.class,
                    () -> Mpi.send(buf, 1, Mpi.INT(), size + 5, 0, Mpi.COMM_WORLD()));
            assertTrue(e.getMessage().startsWith("MPI_Send failed: mpi status"), e.getMessage());
            assertFalse(e.getMessage().contains("MPI error " + e.status()), "expected MPI_Error_string's text: " + e.getMessage());
            System.out.println("expected error: " + e.getMessage());
        }
        assertTrue(Mpi.errorString(mpi_h.MPI_ERR_TRUNCATE()).toLowerCase().contains("truncat"));
    }
}
