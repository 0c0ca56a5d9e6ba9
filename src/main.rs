fn main() {
    println!("community-sync");
}
