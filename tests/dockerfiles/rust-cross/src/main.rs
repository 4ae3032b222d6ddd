fn main() {
    println!("hello from {}", std::env::consts::ARCH);
}
