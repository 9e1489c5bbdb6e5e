package dev.exeunt.ffm.mpi;

import java.lang.foreign.MemorySegment;

/**
 * Open MPI's predefined handles. Hand-written next to the generated {@link mpi_h}: in Open MPI a handle such as
 * {@code MPI_COMM_WORLD} is {@code #define MPI_COMM_WORLD OMPI_PREDEFINED_GLOBAL(MPI_Comm, ompi_mpi_comm_world)}, that
 * is {@code ((MPI_Comm) &ompi_mpi_comm_world)}: the address of an exported global whose struct type is incomplete in
 * mpi.h, so jextract emits neither the macro nor the variable. Each method here returns that address (a zero-length
 * segment), resolved on first use through {@link mpi_h}'s library lookup.
 */
public final class MpiHandles {
    private MpiHandles() {
    }

    private static final class ompi_mpi_comm_world$constants {
        static final MemorySegment SEGMENT = mpi_h.findOrThrow("ompi_mpi_comm_world");
    }

    /** {@code &ompi_mpi_comm_world} (struct ompi_predefined_communicator_t). */
    public static MemorySegment ompi_mpi_comm_world() {
        return ompi_mpi_comm_world$constants.SEGMENT;
    }

    private static final class ompi_mpi_comm_self$constants {
        static final MemorySegment SEGMENT = mpi_h.findOrThrow("ompi_mpi_comm_self");
    }

    /** {@code &ompi_mpi_comm_self} (struct ompi_predefined_communicator_t). */
    public static MemorySegment ompi_mpi_comm_self() {
        return ompi_mpi_comm_self$constants.SEGMENT;
    }

    private static final class ompi_mpi_comm_null$constants {
        static final MemorySegment SEGMENT = mpi_h.findOrThrow("ompi_mpi_comm_null");
    }

    /** {@code &ompi_mpi_comm_null} (struct ompi_predefined_communicator_t). */
    public static MemorySegment ompi_mpi_comm_null() {
        return ompi_mpi_comm_null$constants.SEGMENT;
    }

    private static final class ompi_mpi_byte$constants {
        static final MemorySegment SEGMENT = mpi_h.findOrThrow("ompi_mpi_byte");
    }

    /** {@code &ompi_mpi_byte} (struct ompi_predefined_datatype_t). */
    public static MemorySegment ompi_mpi_byte() {
        return ompi_mpi_byte$constants.SEGMENT;
    }

    private static final class ompi_mpi_char$constants {
        static final MemorySegment SEGMENT = mpi_h.findOrThrow("ompi_mpi_char");
    }

    /** {@code &ompi_mpi_char} (struct ompi_predefined_datatype_t). */
    public static MemorySegment ompi_mpi_char() {
        return ompi_mpi_char$constants.SEGMENT;
    }

    private static final class ompi_mpi_int$constants {
        static final MemorySegment SEGMENT = mpi_h.findOrThrow("ompi_mpi_int");
    }

    /** {@code &ompi_mpi_int} (struct ompi_predefined_datatype_t). */
    public static MemorySegment ompi_mpi_int() {
        return ompi_mpi_int$constants.SEGMENT;
    }

    private static final class ompi_mpi_float$constants {
        static final MemorySegment SEGMENT = mpi_h.findOrThrow("ompi_mpi_float");
    }

    /** {@code &ompi_mpi_float} (struct ompi_predefined_datatype_t). */
    public static MemorySegment ompi_mpi_float() {
        return ompi_mpi_float$constants.SEGMENT;
    }

    private static final class ompi_mpi_double$constants {
        static final MemorySegment SEGMENT = mpi_h.findOrThrow("ompi_mpi_double");
    }

    /** {@code &ompi_mpi_double} (struct ompi_predefined_datatype_t). */
    public static MemorySegment ompi_mpi_double() {
        return ompi_mpi_double$constants.SEGMENT;
    }

    private static final class ompi_mpi_long_long_int$constants {
        static final MemorySegment SEGMENT = mpi_h.findOrThrow("ompi_mpi_long_long_int");
    }

    /** {@code &ompi_mpi_long_long_int} (struct ompi_predefined_datatype_t). */
    public static MemorySegment ompi_mpi_long_long_int() {
        return ompi_mpi_long_long_int$constants.SEGMENT;
    }

    private static final class ompi_mpi_int64_t$constants {
        static final MemorySegment SEGMENT = mpi_h.findOrThrow("ompi_mpi_int64_t");
    }

    /** {@code &ompi_mpi_int64_t} (struct ompi_predefined_datatype_t). */
    public static MemorySegment ompi_mpi_int64_t() {
        return ompi_mpi_int64_t$constants.SEGMENT;
    }

    private static final class ompi_mpi_int8_t$constants {
        static final MemorySegment SEGMENT = mpi_h.findOrThrow("ompi_mpi_int8_t");
    }

    /** {@code &ompi_mpi_int8_t} (struct ompi_predefined_datatype_t). */
    public static MemorySegment ompi_mpi_int8_t() {
        return ompi_mpi_int8_t$constants.SEGMENT;
    }

    private static final class ompi_mpi_uint16_t$constants {
        static final MemorySegment SEGMENT = mpi_h.findOrThrow("ompi_mpi_uint16_t");
    }

    /** {@code &ompi_mpi_uint16_t} (struct ompi_predefined_datatype_t). */
    public static MemorySegment ompi_mpi_uint16_t() {
        return ompi_mpi_uint16_t$constants.SEGMENT;
    }

    private static final class ompi_mpi_op_sum$constants {
        static final MemorySegment SEGMENT = mpi_h.findOrThrow("ompi_mpi_op_sum");
    }

    /** {@code &ompi_mpi_op_sum} (struct ompi_predefined_op_t). */
    public static MemorySegment ompi_mpi_op_sum() {
        return ompi_mpi_op_sum$constants.SEGMENT;
    }

    private static final class ompi_mpi_op_max$constants {
        static final MemorySegment SEGMENT = mpi_h.findOrThrow("ompi_mpi_op_max");
    }

    /** {@code &ompi_mpi_op_max} (struct ompi_predefined_op_t). */
    public static MemorySegment ompi_mpi_op_max() {
        return ompi_mpi_op_max$constants.SEGMENT;
    }

    private static final class ompi_mpi_op_min$constants {
        static final MemorySegment SEGMENT = mpi_h.findOrThrow("ompi_mpi_op_min");
    }

    /** {@code &ompi_mpi_op_min} (struct ompi_predefined_op_t). */
    public static MemorySegment ompi_mpi_op_min() {
        return ompi_mpi_op_min$constants.SEGMENT;
    }

    private static final class ompi_mpi_op_prod$constants {
        static final MemorySegment SEGMENT = mpi_h.findOrThrow("ompi_mpi_op_prod");
    }

    /** {@code &ompi_mpi_op_prod} (struct ompi_predefined_op_t). */
    public static MemorySegment ompi_mpi_op_prod() {
        return ompi_mpi_op_prod$constants.SEGMENT;
    }

    private static final class ompi_mpi_errors_return$constants {
        static final MemorySegment SEGMENT = mpi_h.findOrThrow("ompi_mpi_errors_return");
    }

    /** {@code &ompi_mpi_errors_return} (struct ompi_predefined_errhandler_t). */
    public static MemorySegment ompi_mpi_errors_return() {
        return ompi_mpi_errors_return$constants.SEGMENT;
    }

    private static final class ompi_mpi_errors_are_fatal$constants {
        static final MemorySegment SEGMENT = mpi_h.findOrThrow("ompi_mpi_errors_are_fatal");
    }

    /** {@code &ompi_mpi_errors_are_fatal} (struct ompi_predefined_errhandler_t). */
    public static MemorySegment ompi_mpi_errors_are_fatal() {
        return ompi_mpi_errors_are_fatal$constants.SEGMENT;
    }

    private static final class ompi_request_null$constants {
        static final MemorySegment SEGMENT = mpi_h.findOrThrow("ompi_request_null");
    }

    /** {@code &ompi_request_null} (struct ompi_predefined_request_t). */
    public static MemorySegment ompi_request_null() {
        return ompi_request_null$constants.SEGMENT;
    }

    /** {@code MPI_COMM_WORLD}, i.e. {@code &ompi_mpi_comm_world}. */
    public static MemorySegment MPI_COMM_WORLD() {
        return ompi_mpi_comm_world();
    }

    /** {@code MPI_COMM_SELF}, i.e. {@code &ompi_mpi_comm_self}. */
    public static MemorySegment MPI_COMM_SELF() {
        return ompi_mpi_comm_self();
    }

    /** {@code MPI_COMM_NULL}, i.e. {@code &ompi_mpi_comm_null}. */
    public static MemorySegment MPI_COMM_NULL() {
        return ompi_mpi_comm_null();
    }

    /** {@code MPI_BYTE}, i.e. {@code &ompi_mpi_byte}. */
    public static MemorySegment MPI_BYTE() {
        return ompi_mpi_byte();
    }

    /** {@code MPI_CHAR}, i.e. {@code &ompi_mpi_char}. */
    public static MemorySegment MPI_CHAR() {
        return ompi_mpi_char();
    }

    /** {@code MPI_INT}, i.e. {@code &ompi_mpi_int}. */
    public static MemorySegment MPI_INT() {
        return ompi_mpi_int();
    }

    /** {@code MPI_FLOAT}, i.e. {@code &ompi_mpi_float}. */
    public static MemorySegment MPI_FLOAT() {
        return ompi_mpi_float();
    }

    /** {@code MPI_DOUBLE}, i.e. {@code &ompi_mpi_double}. */
    public static MemorySegment MPI_DOUBLE() {
        return ompi_mpi_double();
    }

    /** {@code MPI_LONG_LONG}, i.e. {@code &ompi_mpi_long_long_int}. */
    public static MemorySegment MPI_LONG_LONG() {
        return ompi_mpi_long_long_int();
    }

    /** {@code MPI_INT64_T}, i.e. {@code &ompi_mpi_int64_t}. */
    public static MemorySegment MPI_INT64_T() {
        return ompi_mpi_int64_t();
    }

    /** {@code MPI_INT8_T}, i.e. {@code &ompi_mpi_int8_t}. */
    public static MemorySegment MPI_INT8_T() {
        return ompi_mpi_int8_t();
    }

    /** {@code MPI_UINT16_T}, i.e. {@code &ompi_mpi_uint16_t}. */
    public static MemorySegment MPI_UINT16_T() {
        return ompi_mpi_uint16_t();
    }

    /** {@code MPI_SUM}, i.e. {@code &ompi_mpi_op_sum}. */
    public static MemorySegment MPI_SUM() {
        return ompi_mpi_op_sum();
    }

    /** {@code MPI_MAX}, i.e. {@code &ompi_mpi_op_max}. */
    public static MemorySegment MPI_MAX() {
        return ompi_mpi_op_max();
    }

    /** {@code MPI_MIN}, i.e. {@code &ompi_mpi_op_min}. */
    public static MemorySegment MPI_MIN() {
        return ompi_mpi_op_min();
    }

    /** {@code MPI_PROD}, i.e. {@code &ompi_mpi_op_prod}. */
    public static MemorySegment MPI_PROD() {
        return ompi_mpi_op_prod();
    }

    /** {@code MPI_ERRORS_RETURN}, i.e. {@code &ompi_mpi_errors_return}. */
    public static MemorySegment MPI_ERRORS_RETURN() {
        return ompi_mpi_errors_return();
    }

    /** {@code MPI_ERRORS_ARE_FATAL}, i.e. {@code &ompi_mpi_errors_are_fatal}. */
    public static MemorySegment MPI_ERRORS_ARE_FATAL() {
        return ompi_mpi_errors_are_fatal();
    }

    /** {@code MPI_REQUEST_NULL}, i.e. {@code &ompi_request_null}. */
    public static MemorySegment MPI_REQUEST_NULL() {
        return ompi_request_null();
    }

    /** {@code MPI_STATUS_IGNORE}: {@code ((MPI_Status *) 0)} in Open MPI. */
    public static MemorySegment MPI_STATUS_IGNORE() {
        return MemorySegment.NULL;
    }

    /** {@code MPI_IN_PLACE}: {@code ((void *) 1)} in Open MPI. */
    public static MemorySegment MPI_IN_PLACE() {
        return MemorySegment.ofAddress(1L);
    }
}
