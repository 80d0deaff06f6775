fn main() {
    println!("{}", reach_agent::ebpf_objects::doctor().len());
}
