package dev.exeunt.cli;

public final class Main {
    public static void main(String[] args) {
        System.out.println("exeunt 0.1.0-SNAPSHOT (Java " + Runtime.version() + ")");
    }
}
