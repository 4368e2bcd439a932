//! Prints the Winograd accuracy table (markdown) measured by `kernels::winograd::accuracy`:
//! `cargo run --release -p kernels --example winograd_accuracy`

fn main() -> Result<(), kernels::KernelError> {
    let rows = kernels::winograd::accuracy()?;
    println!("Error relative to |bias| + sum |w||x| against the f64-accumulating naive oracle,");
    println!(
        "4 seeds per row, worst runnable flavour per tile size (KERNELS_ISA={}).\n",
        kernels::isa::ceiling()?
    );
    print!("{}", kernels::winograd::accuracy_table(&rows));
    Ok(())
}
